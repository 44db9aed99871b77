// SPDX-License-Identifier: Apache-2.0

// future.go: Futures, task keys, and Gather, which waits for many futures
// over a few server-streaming Gather calls (one per 10,000 keys) and fills
// them in as results stream back. Depends on client.go.

package taskgrid

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// Future is the handle of a submitted task. It is safe for concurrent use.
type Future struct {
	c    *Client
	key  string
	once sync.Once
	done chan struct{}

	// Written once, before done is closed.
	state TaskState
	data  []byte
	codec string
	err   *TaskError
}

func newFuture(c *Client, key string) *Future {
	return &Future{c: c, key: key, done: make(chan struct{})}
}

// Future returns a handle for a key submitted elsewhere (by another client,
// or in another language). It adds no hold: the result stays only as long
// as its submitter holds it.
func (c *Client) Future(key string) *Future { return newFuture(c, key) }

// Key is the task's key.
func (f *Future) Key() string { return f.key }

// Done is closed once the task is final (memory, erred, cancelled or
// released) and this future has heard of it.
func (f *Future) Done() <-chan struct{} { return f.done }

func (f *Future) isDone() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// State is the state this future last heard of: StatePending until it is
// final. It does not call the scheduler (see Client.Status).
func (f *Future) State() TaskState {
	if !f.isDone() {
		return StatePending
	}
	return f.state
}

// Result waits for the task (bounded by ctx) and returns its result bytes,
// or an error: a *TaskError if it erred, was cancelled (errors.Is
// ErrCancelled) or is unknown to the scheduler (errors.Is ErrUnknownKey),
// else the failure of the call. The bytes must not be modified.
func (f *Future) Result(ctx context.Context) ([]byte, error) {
	if !f.isDone() {
		if err := f.c.Gather(ctx, f); !f.isDone() {
			return nil, err
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	return f.data, nil
}

// Codec is the codec tag of the result ("" until the task finished, or when
// the worker set none).
func (f *Future) Codec() string {
	if !f.isDone() {
		return ""
	}
	return f.codec
}

// Decode waits for a result with codec "json" and unmarshals it into v.
func (f *Future) Decode(ctx context.Context, v any) error {
	data, err := f.Result(ctx)
	if err != nil {
		return err
	}
	if f.codec != "json" {
		return fmt.Errorf("taskgrid: task %q: result has codec %q, not json", f.key, f.codec)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("taskgrid: task %q: %w", f.key, err)
	}
	return nil
}

// Cancel cancels the task and its dependents.
func (f *Future) Cancel(ctx context.Context) error {
	_, err := f.c.Cancel(ctx, f.key)
	return err
}

// Release tells the scheduler this future's client no longer needs the
// result (see Client.Release). What the future gathered stays readable.
func (f *Future) Release(ctx context.Context) error {
	_, err := f.c.Release(ctx, f.key)
	return err
}

// settle records a final result; the first one wins.
func (f *Future) settle(r *pb.TaskResult) {
	f.once.Do(func() {
		f.state = TaskState(r.GetState())
		if f.state == StateMemory {
			f.data, f.codec = r.GetData(), r.GetCodec()
		} else {
			f.err = taskErrorOf(r)
		}
		close(f.done)
	})
}

// Gather waits until every future is final, bounded by ctx. Results stream
// back as tasks finish, many per message, over one Gather stream per 10,000
// distinct keys, so waiting on a large graph costs no round trip per key.
// Futures already final are skipped; a future may appear several times.
//
// It returns nil when every task succeeded, the first task error in
// argument order (a *TaskError) once all are final, or the failure of the
// call (ctx ended, the scheduler went away), in which case some futures may
// still be pending.
//
// Called from inside a task (with the task's context), the task secedes
// while Gather waits: its slot runs other tasks, and the scheduler does not
// count it against the worker's threads.
func (c *Client) Gather(ctx context.Context, fs ...*Future) error {
	waiting := make(map[string][]*Future)
	var keys []string
	for _, f := range fs {
		if f == nil {
			return errors.New("taskgrid: gather: nil future")
		}
		if f.isDone() {
			continue
		}
		if _, ok := waiting[f.key]; !ok {
			keys = append(keys, f.key)
		}
		waiting[f.key] = append(waiting[f.key], f)
	}
	if len(keys) > 0 {
		if err := c.checkOpen(); err != nil {
			return err
		}
		if err := c.wait(ctx, keys, waiting); err != nil {
			return err
		}
	}
	for _, f := range fs {
		if f.isDone() && f.err != nil {
			return f.err
		}
	}
	return nil
}

// wait runs one Gather stream per maxBatch keys, concurrently.
func (c *Client) wait(ctx context.Context, keys []string, waiting map[string][]*Future) error {
	if t := runningTaskFrom(ctx); t != nil {
		t.secede()
		defer t.rejoin(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := (len(keys) + maxBatch - 1) / maxBatch
	errs := make(chan error, n)
	for i := 0; i < len(keys); i += maxBatch {
		part := keys[i:min(i+maxBatch, len(keys))]
		go func() { errs <- c.gatherStream(ctx, part, waiting, c.direct != nil) }()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// gatherStream gathers keys over one Gather stream. deferHeld (a client
// made WithDirectToWorkers): results held on workers come without their
// bytes, which are then fetched from a holder (direct.go).
func (c *Client) gatherStream(ctx context.Context, keys []string, waiting map[string][]*Future, deferHeld bool) error {
	stream, err := c.rpc.Gather(ctx, &pb.GatherRequest{Keys: keys, Chunked: true, DeferHeld: deferHeld})
	if err != nil {
		return callError(ctx, "gather", err)
	}
	g := &gathering{waiting: waiting, parts: make(map[string]*partial), deferHeld: deferHeld}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return callError(ctx, "gather", err)
		}
		for _, r := range resp.GetResults() {
			g.result(r)
		}
		for _, ch := range resp.GetChunks() {
			g.chunk(ch)
		}
	}
	if len(g.held) > 0 {
		if err := c.settleHeld(ctx, g.held, waiting); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if waiting[k][0].isDone() {
			continue
		}
		if p := g.parts[k]; p != nil {
			return fmt.Errorf("taskgrid: gather: the scheduler ended the stream after %d of the %d bytes of %q", len(p.buf), p.size, k)
		}
		return fmt.Errorf("taskgrid: gather: the scheduler ended the stream without answering %q", k)
	}
	return nil
}

// gathering is the state of one Gather stream: the futures it fills and
// the results arriving in chunks (GatherRequest.chunked), by key.
type gathering struct {
	waiting map[string][]*Future
	parts   map[string]*partial
	// With deferHeld: the held results answered without their bytes.
	deferHeld bool
	held      []*pb.TaskResult
}

// partial is a result whose bytes are arriving in chunks.
type partial struct {
	*assembly
	header *pb.TaskResult
}

// result applies one TaskResult: a final one settles its futures, except
// a MEMORY result without its bytes, whose chunks follow. An ERRED result
// for a key being assembled (its holder was lost) ends the assembly.
func (g *gathering) result(r *pb.TaskResult) {
	key := r.GetKey()
	fs := g.waiting[key]
	if !TaskState(r.GetState()).Final() || len(fs) == 0 || fs[0].isDone() {
		return
	}
	if r.GetState() == pb.TaskState_TASK_STATE_MEMORY && len(r.GetData()) == 0 && r.GetSize() > 0 {
		if g.deferHeld && r.GetHeld() {
			g.held = append(g.held, r)
			return
		}
		if g.parts[key] == nil {
			g.parts[key] = &partial{assembly: newAssembly(r.GetSize()), header: r}
		}
		return
	}
	delete(g.parts, key)
	g.settle(key, r)
}

// chunk adds one chunk to its result, settling the futures when the
// result is complete, or with a "tg.DataCorrupt" error (naming the key)
// when the chunk does not fit.
func (g *gathering) chunk(ch *pb.DataChunk) {
	key := ch.GetKey()
	p := g.parts[key]
	if p == nil {
		return
	}
	if err := p.add(ch); err != nil {
		delete(g.parts, key)
		g.settle(key, &pb.TaskResult{Key: key, State: pb.TaskState_TASK_STATE_ERRED, Error: &pb.TaskError{
			Type:    "tg.DataCorrupt",
			Message: fmt.Sprintf("the result of %q (%d bytes) arrived damaged and was discarded: %v", key, p.size, err),
		}})
		return
	}
	if p.done() {
		delete(g.parts, key)
		r := p.header
		r.Data = p.buf
		g.settle(key, r)
	}
}

func (g *gathering) settle(key string, r *pb.TaskResult) {
	for _, f := range g.waiting[key] {
		f.settle(r)
	}
}

// NewKey returns a new unique task key "<fn>-<16 hex digits>", the key
// Submit gives a task without one; use it to build graphs whose tasks name
// each other before submission. Keys are unique within the process (a
// counter through a 64-bit bijection, seeded at random per process), so
// distinct processes collide only by chance (about n^2/2^65).
func NewKey(fn string) string {
	x := keySeed + keyCounter.Add(1)
	// splitmix64's finaliser: a bijection on 64 bits.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], x)
	return fn + "-" + hex.EncodeToString(b[:])
}

var (
	keyCounter atomic.Uint64
	keySeed    = func() uint64 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return binary.LittleEndian.Uint64(b[:])
	}()
)

// randomHex returns 16 random hex digits.
func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
