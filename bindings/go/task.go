// SPDX-License-Identifier: Apache-2.0

// task.go: one task on a Go worker, and what its function can reach
// through its context: TaskInfoFromContext (key, attempt, codecs, ...),
// SetResultCodec, and ClientFromContext, the worker-side client for nested
// work. Depends on executor.go (slots) and client.go.

package taskgrid

import (
	"context"
	"fmt"
	"sync"
	"time"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// task is one assignment on its way through the executor.
type task struct {
	key      string
	a        *pb.Assignment
	priority int32
	w        *Worker
	sess     *session // whose outbox receives the outcome
	ctx      context.Context
	cancel   context.CancelFunc

	// Guarded by the executor's mutex.
	seq       uint64
	index     int // in the executor's heap while queued
	state     int
	cancelled bool
	holdsSlot bool
	waits     int // nested waits in progress (see executor.secede)

	mu          sync.Mutex // guards the fields below
	resultCodec string
	client      *Client
}

type taskCtxKey struct{}

// runningTaskFrom returns the task whose context ctx is (or derives from).
func runningTaskFrom(ctx context.Context) *task {
	t, _ := ctx.Value(taskCtxKey{}).(*task)
	return t
}

func (t *task) secede()                    { t.w.exec.secede(t) }
func (t *task) rejoin(ctx context.Context) { t.w.exec.rejoin(ctx, t) }
func (t *task) setCodec(codec string)      { t.mu.Lock(); t.resultCodec = codec; t.mu.Unlock() }
func (t *task) codec() string              { t.mu.Lock(); defer t.mu.Unlock(); return t.resultCodec }
func (t *task) depCodec(i int) string      { return t.a.GetDeps()[i].GetCodec() }

// nestedClient returns the task's worker-side client, made on first use.
func (t *task) nestedClient() *Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client == nil {
		t.client = newClient(t.w.address, t.w.cfg, t.w.conn, false)
		t.client.parent = t.key // its tasks are this one's children
	}
	return t.client
}

// releaseNested drops what the task's worker-side client still holds.
func (t *task) releaseNested() {
	t.mu.Lock()
	c := t.client
	t.mu.Unlock()
	if c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.w.cfg.logger.Warn("taskgrid: releasing nested results", "task", t.key, "err", err)
		}
	}
}

// TaskInfo describes the task a function is running.
type TaskInfo struct {
	Key       string
	Func      string
	Codec     string   // codec of the input ("" means raw)
	DepCodecs []string // codec of each dependency result, in order
	Attempt   uint32   // 1 for the first run
	Priority  int32
	Worker    string // the name the scheduler registered the worker under
}

// TaskInfoFromContext describes the running task, if ctx is (or derives
// from) the context a Worker passed to a task function.
func TaskInfoFromContext(ctx context.Context) (TaskInfo, bool) {
	t := runningTaskFrom(ctx)
	if t == nil {
		return TaskInfo{}, false
	}
	info := TaskInfo{
		Key: t.key, Func: t.a.GetFunc(), Codec: t.a.GetCodec(),
		Attempt: t.a.GetAttempt(), Priority: t.a.GetPriority(), Worker: t.w.Name(),
	}
	for i := range t.a.GetDeps() {
		info.DepCodecs = append(info.DepCodecs, t.depCodec(i))
	}
	return info, true
}

// SetResultCodec sets the codec tag of the running task's result (default
// "raw"); JSONFunc sets "json". Outside a task it does nothing.
func SetResultCodec(ctx context.Context, codec string) {
	if t := runningTaskFrom(ctx); t != nil {
		t.setCodec(codec)
	}
}

// ClientFromContext returns a client bound to the scheduler (and
// credentials) of the worker running the task whose context ctx is: the Go
// twin of Dask's get_client() and the C SDK's tg_task_client(). It shares
// the worker's connection; what it still holds when the task returns is
// released then, so return nested results as data rather than keys. While
// the task waits on it (Gather, Future.Result) with its context, the task
// secedes: its slot runs other tasks and the scheduler does not count it
// against the worker's threads, so nested work cannot deadlock a full
// cluster. Tasks it submits name the task as their parent: cancelling the
// task (Client.Cancel) cancels them too, recursively. With any other
// context it returns an error wrapping ErrNotInTask.
func ClientFromContext(ctx context.Context) (*Client, error) {
	t := runningTaskFrom(ctx)
	if t == nil {
		return nil, fmt.Errorf("taskgrid: ClientFromContext: %w (pass the context the task function was given)", ErrNotInTask)
	}
	return t.nestedClient(), nil
}

// uptimeMs is the heartbeat payload.
func uptimeMs(start time.Time) uint64 { return uint64(time.Since(start).Milliseconds()) }
