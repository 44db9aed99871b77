// SPDX-License-Identifier: Apache-2.0

// watch.go: following the cluster over Scheduler.Watch (typed updates,
// reopened when the connection breaks), Progress over it, and
// SetLogLevel. The scheduler batches what happens into at most one update
// per interval (the first at once, with the current state), so a watcher
// costs it a bounded amount of work whatever the rate of tasks. Depends
// on client.go and errors.go.

package taskgrid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// MaxWatchKeys is the most keys one Watch stream may follow (the
// protocol's limit); Progress splits larger sets over several streams.
const MaxWatchKeys = 65535

// progressStreamKeys is how many keys Progress puts on one stream (tests
// lower it).
var progressStreamKeys = MaxWatchKeys

// defaultReconnect is how long a broken watch stream is reopened for.
const defaultReconnect = 30 * time.Second

// LogLevels are the scheduler's log levels, least to most verbose.
var LogLevels = []string{"error", "warn", "info", "debug"}

// TaskCounts counts tasks per state. Released counts forgotten tasks (in
// WatchUpdate.Totals: since the scheduler started) or, among followed
// keys, keys the scheduler does not know.
type TaskCounts struct {
	Waiting, Ready, Processing, Memory, Erred, Cancelled, Released uint64
}

// Active is the number of tasks still to finish (waiting, ready or
// processing).
func (c TaskCounts) Active() uint64 { return c.Waiting + c.Ready + c.Processing }

// Done is the number of tasks in a final state (memory, erred, cancelled
// or released).
func (c TaskCounts) Done() uint64 { return c.Memory + c.Erred + c.Cancelled + c.Released }

// Total is every task counted.
func (c TaskCounts) Total() uint64 { return c.Active() + c.Done() }

func (c TaskCounts) add(o TaskCounts) TaskCounts {
	return TaskCounts{c.Waiting + o.Waiting, c.Ready + o.Ready, c.Processing + o.Processing,
		c.Memory + o.Memory, c.Erred + o.Erred, c.Cancelled + o.Cancelled, c.Released + o.Released}
}

func countsFromPB(m *pb.TaskCounts) TaskCounts {
	return TaskCounts{m.GetWaiting(), m.GetReady(), m.GetProcessing(), m.GetMemory(),
		m.GetErred(), m.GetCancelled(), m.GetReleased()}
}

// TaskEvent is one change of a followed task's state. Previous is
// StatePending for a new task; State StateReleased once forgotten.
type TaskEvent struct {
	Key             string
	Previous, State TaskState
	Function        string
	// Worker: where it was assigned (processing) or where it ran (memory,
	// erred).
	Worker  string
	Attempt int
	// Time is when the scheduler saw the change (its clock).
	Time time.Time
	// RunTime is how long the function ran on the worker (memory or erred
	// from a run); NBytes the result's size (memory); ErrorType the
	// error's type (erred).
	RunTime   time.Duration
	NBytes    uint64
	ErrorType string
}

// WorkerEventKind says what happened to a worker.
type WorkerEventKind int32

const (
	// WorkerJoined: registered (in the first update: every connected worker).
	WorkerJoined WorkerEventKind = WorkerEventKind(pb.WorkerEvent_KIND_JOINED)
	// WorkerLeft: disconnected, retired or lost (Reason says which).
	WorkerLeft WorkerEventKind = WorkerEventKind(pb.WorkerEvent_KIND_LEFT)
	// WorkerUpdated: its memory report or its number of tasks changed.
	WorkerUpdated WorkerEventKind = WorkerEventKind(pb.WorkerEvent_KIND_UPDATED)
)

func (k WorkerEventKind) String() string {
	switch k {
	case WorkerJoined:
		return "joined"
	case WorkerLeft:
		return "left"
	case WorkerUpdated:
		return "updated"
	}
	return fmt.Sprintf("WorkerEventKind(%d)", int32(k))
}

// WorkerEvent is a worker joining, leaving or changing.
type WorkerEvent struct {
	Kind   WorkerEventKind
	Worker WorkerInfo
	Reason string
	Time   time.Time
}

// WatchUpdate is one batch of what happened since the previous update.
type WatchUpdate struct {
	Time time.Time
	// Totals: tasks per state over the whole cluster. KeysCounts: the
	// followed Keys per state (zero without keys).
	Totals, KeysCounts TaskCounts
	// Tasks: state changes of followed tasks, in order (TaskEvents);
	// DroppedEvents: those beyond the per-update bound, not sent.
	Tasks         []TaskEvent
	DroppedEvents uint64
	// Functions: tasks per state of each function (all in the first
	// update, then those that changed).
	Functions map[string]TaskCounts
	// With Workers: worker events, the number connected and the scaling
	// target (0: none).
	Workers                 []WorkerEvent
	NWorkers, TargetWorkers int
	// Reconnected: the stream broke and was reopened before this update,
	// so events in between were missed (counts are current).
	Reconnected bool
}

func micros(us int64) time.Time { return time.UnixMicro(us) }

func workerInfoFromPB(w *pb.WorkerInfo) WorkerInfo {
	return WorkerInfo{
		Name: w.GetName(), NThreads: int(w.GetNthreads()), Processing: int(w.GetProcessing()),
		Functions: w.GetFunctions(), Resources: resourcesFromPB(w.GetResources()), Draining: w.GetDraining(),
		Memory: w.GetMemory(), Spilled: w.GetSpilled(), MemoryLimit: w.GetMemoryLimit(), RSS: w.GetRss(),
		Paused: w.GetPaused(), Seceded: int(w.GetSeceded()),
	}
}

func updateFromPB(m *pb.WatchUpdate, reconnected bool) *WatchUpdate {
	u := &WatchUpdate{
		Time: micros(m.GetTimeUs()), Totals: countsFromPB(m.GetTotals()),
		KeysCounts: countsFromPB(m.GetKeysCounts()), DroppedEvents: m.GetDroppedEvents(),
		NWorkers: int(m.GetNworkers()), TargetWorkers: int(m.GetTargetWorkers()),
		Reconnected: reconnected,
	}
	for _, e := range m.GetTasks() {
		u.Tasks = append(u.Tasks, TaskEvent{
			Key: e.GetKey(), Previous: TaskState(e.GetPrevious()), State: TaskState(e.GetState()),
			Function: e.GetFunction(), Worker: e.GetWorker(), Attempt: int(e.GetAttempt()),
			Time: micros(e.GetTimeUs()), RunTime: time.Duration(e.GetRunUs()) * time.Microsecond,
			NBytes: e.GetNbytes(), ErrorType: e.GetErrorType(),
		})
	}
	if fs := m.GetFunctions(); len(fs) > 0 {
		u.Functions = make(map[string]TaskCounts, len(fs))
		for _, f := range fs {
			u.Functions[f.GetFunction()] = countsFromPB(f.GetCounts())
		}
	}
	for _, e := range m.GetWorkers() {
		u.Workers = append(u.Workers, WorkerEvent{
			Kind: WorkerEventKind(e.GetKind()), Worker: workerInfoFromPB(e.GetWorker()),
			Reason: e.GetReason(), Time: micros(e.GetTimeUs()),
		})
	}
	return u
}

// WatchOptions says what a Watch follows.
type WatchOptions struct {
	// Keys are counted per state in every update (at most MaxWatchKeys).
	Keys []string
	// KeyPrefixes follow every task whose key starts with one ("" matches
	// all; on a TLS cluster only the admin role may).
	KeyPrefixes []string
	// TaskEvents adds each state change of followed tasks; Functions the
	// tasks per state of each function; Workers worker joins, leaves and
	// changes.
	TaskEvents, Functions, Workers bool
	// Interval is the least time between updates (0: 100 ms; at least 10 ms).
	Interval time.Duration
	// MaxEvents bounds the task events per update (0: the scheduler's 10,000).
	MaxEvents int
	// Reconnect is how long a broken stream (Unavailable) is reopened for
	// (0: 30 s; negative: never).
	Reconnect time.Duration
}

// Watch is an open Scheduler.Watch stream. Read it with Next; cancelling
// the context given to Client.Watch, or Close, ends it.
type Watch struct {
	c           *Client
	ctx         context.Context
	cancel      context.CancelFunc
	req         *pb.WatchRequest
	reconnect   time.Duration
	stream      pb.Scheduler_WatchClient
	reconnected bool
}

// Watch opens a stream of updates (see WatchOptions); read it with Next.
func (c *Client) Watch(ctx context.Context, opts WatchOptions) (*Watch, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	req, err := opts.request()
	if err != nil {
		return nil, fmt.Errorf("taskgrid: watch: %w", err)
	}
	w := &Watch{c: c, req: req, reconnect: opts.Reconnect}
	if w.reconnect == 0 {
		w.reconnect = defaultReconnect
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	if w.stream, err = c.rpc.Watch(w.ctx, req); err != nil {
		w.cancel()
		return nil, callError(ctx, "watch", err)
	}
	return w, nil
}

func (o WatchOptions) request() (*pb.WatchRequest, error) {
	uniq := uniqueKeys(o.Keys)
	switch {
	case len(uniq) > MaxWatchKeys:
		return nil, fmt.Errorf("at most %d keys per stream, got %d: open several watches, or use Progress (it splits them)", MaxWatchKeys, len(uniq))
	case o.Interval < 0:
		return nil, fmt.Errorf("negative interval %v", o.Interval)
	case o.MaxEvents < 0:
		return nil, fmt.Errorf("negative MaxEvents %d", o.MaxEvents)
	}
	ms := uint32(0)
	if o.Interval > 0 {
		ms = uint32(max(o.Interval.Milliseconds(), 10))
	}
	return &pb.WatchRequest{
		Keys: uniq, KeyPrefixes: o.KeyPrefixes, TaskEvents: o.TaskEvents,
		Functions: o.Functions, Workers: o.Workers, IntervalMs: ms, MaxEvents: uint32(o.MaxEvents),
	}, nil
}

// Next waits for the next update. It returns io.EOF when the scheduler
// ended the stream, an error matching context.Canceled (or
// DeadlineExceeded) once the context ended or Close was called, and
// otherwise the stream's failure (status.Code gives its gRPC code, e.g.
// codes.Unimplemented from a scheduler without Watch, or
// codes.PermissionDenied). A stream broken by the connection
// (Unavailable) is reopened for up to WatchOptions.Reconnect; the next
// update then has Reconnected set.
func (w *Watch) Next() (*WatchUpdate, error) {
	var deadline time.Time
	delay := 50 * time.Millisecond
	for {
		m, err := w.stream.Recv()
		if err == nil {
			u := updateFromPB(m, w.reconnected)
			w.reconnected = false
			return u, nil
		}
		if w.ctx.Err() != nil {
			// Ended by the caller, whatever the stream said last.
			return nil, callError(w.ctx, "watch", w.ctx.Err())
		}
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if status.Code(err) != codes.Unavailable || w.reconnect < 0 {
			return nil, callError(w.ctx, "watch", err)
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(w.reconnect)
		} else if now.After(deadline) {
			return nil, fmt.Errorf("taskgrid: watch: lost the stream from %s and could not reopen it within %v: %w", w.c.address, w.reconnect, err)
		}
		select {
		case <-time.After(min(delay, deadline.Sub(now))):
		case <-w.ctx.Done():
			return nil, callError(w.ctx, "watch", w.ctx.Err())
		}
		delay = min(2*delay, time.Second)
		w.reconnected = true
		if w.stream, err = w.c.rpc.Watch(w.ctx, w.req); err != nil {
			return nil, callError(w.ctx, "watch", err)
		}
	}
}

// Close ends the stream (idempotent).
func (w *Watch) Close() { w.cancel() }

// ProgressInfo is what Progress reports: Done of Total keys are final,
// with their counts per state.
type ProgressInfo struct {
	Done, Total int
	Counts      TaskCounts
	Elapsed     time.Duration
}

// Progress follows futures until every one is final (finished, erred,
// cancelled or unknown to the scheduler), calling fn (if not nil) with the
// figures each time they change; see ProgressKeys.
func (c *Client) Progress(ctx context.Context, futures []*Future, fn func(ProgressInfo)) error {
	keys := make([]string, len(futures))
	for i, f := range futures {
		keys[i] = f.Key()
	}
	return c.ProgressKeys(ctx, keys, fn)
}

// ProgressKeys is Progress over keys. The keys are counted by Watch
// streams of at most MaxWatchKeys keys each, their latest counts summed.
// It returns nil once all are final, ctx's error when ctx ends, or the
// failure of a stream; counts that do not add up to the keys asked for,
// or a stream the scheduler ends early, are errors naming the problem.
func (c *Client) ProgressKeys(ctx context.Context, keys []string, fn func(ProgressInfo)) error {
	keys = uniqueKeys(keys)
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type report struct {
		i      int
		counts TaskCounts
		ended  bool // the stream's last word: err, or nil once its keys are final
		err    error
	}
	reports := make(chan report)
	var chunks [][]string
	for part := range slices.Chunk(keys, progressStreamKeys) {
		chunks = append(chunks, part)
	}
	for i, part := range chunks {
		go func() {
			err := c.followChunk(ctx, part, func(tc TaskCounts) bool {
				select {
				case reports <- report{i: i, counts: tc}:
					return true
				case <-ctx.Done():
					return false
				}
			})
			select {
			case reports <- report{i: i, ended: true, err: err}:
			case <-ctx.Done():
			}
		}()
	}
	start := time.Now()
	latest := make([]*TaskCounts, len(chunks))
	var last ProgressInfo
	for {
		var r report
		select {
		case r = <-reports:
		case <-ctx.Done():
			return fmt.Errorf("taskgrid: progress: %w", ctx.Err())
		}
		if ctx.Err() != nil {
			return fmt.Errorf("taskgrid: progress: %w", ctx.Err())
		}
		if r.err != nil {
			return r.err
		}
		if r.ended {
			continue
		}
		latest[r.i] = &r.counts
		sum, known := TaskCounts{}, true
		for _, l := range latest {
			if l == nil {
				known = false
				break
			}
			sum = sum.add(*l)
		}
		if !known {
			continue
		}
		info := ProgressInfo{Done: int(sum.Done()), Total: len(keys), Counts: sum, Elapsed: time.Since(start)}
		if fn != nil && info.Counts != last.Counts {
			fn(info)
		}
		last = info
		if sum.Active() == 0 {
			return nil
		}
	}
}

// followChunk reads one stream of keys, handing each update's counts to
// send until every key is final (send returning false stops it).
func (c *Client) followChunk(ctx context.Context, keys []string, send func(TaskCounts) bool) error {
	w, err := c.Watch(ctx, WatchOptions{Keys: keys})
	if err != nil {
		return err
	}
	defer w.Close()
	for {
		u, err := w.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("taskgrid: progress: the scheduler at %s ended the watch before every key was final", c.address)
		}
		if err != nil {
			return fmt.Errorf("taskgrid: progress: %w", err)
		}
		if got := u.KeysCounts.Total(); got != uint64(len(keys)) {
			return fmt.Errorf("taskgrid: progress: the scheduler at %s counted %d keys where %d were asked for", c.address, got, len(keys))
		}
		if !send(u.KeysCounts) || u.KeysCounts.Active() == 0 {
			return nil
		}
	}
}

func uniqueKeys(keys []string) []string {
	seen := make(map[string]struct{}, len(keys))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out
}

// SetLogLevel sets the scheduler's log level (one of LogLevels; "debug":
// one structured line per change of a task's state) and returns the level
// before the call; level "" changes nothing and returns the current one.
// A TLS cluster allows it to the admin role only (codes.PermissionDenied).
func (c *Client) SetLogLevel(ctx context.Context, level string) (previous string, err error) {
	if err := c.checkOpen(); err != nil {
		return "", err
	}
	if level != "" && !slices.Contains(LogLevels, level) {
		return "", fmt.Errorf("taskgrid: set log level: unknown level %q: use one of %v", level, LogLevels)
	}
	r, err := c.rpc.SetLogLevel(ctx, &pb.SetLogLevelRequest{Level: level})
	if err != nil {
		return "", callError(ctx, "set log level", err)
	}
	return r.GetPrevious(), nil
}
