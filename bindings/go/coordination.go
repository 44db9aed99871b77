// SPDX-License-Identifier: Apache-2.0

// coordination.go: Variable, Queue, Event, Semaphore and Lock kept by the
// scheduler (Scheduler/Coordinate, as Dask's primitives), shared with
// every client and task of the cluster in any language: a Go client and a
// Python task can use one Queue. Values are bytes with a codec ("json"
// reads the same in every language) or a future's key.

package taskgrid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// ErrCoordTimeout is returned (wrapped) by a coordination call that
// waited its whole timeout without getting what it waited for.
var ErrCoordTimeout = errors.New("taskgrid: coordination: timed out")

// Wait durations of the coordination calls: Forever waits without bound
// (until ctx ends); 0 does not wait.
const Forever time.Duration = -1

// Value is what a Variable or a Queue holds: Data with its Codec, or the
// Key of a future. A Value read from the scheduler hands this client one
// hold on Key and on each of Refs (the futures Data refers to): the
// results stay until Client.Release or Close gives them back.
type Value struct {
	Data  []byte
	Codec string
	Key   string
	Refs  []string
}

// JSONValue is a value every language reads as JSON.
func JSONValue(data []byte) Value { return Value{Data: data, Codec: "json"} }

// FutureValue is the future f, stored by its key: its result is held while
// the value is.
func FutureValue(f *Future) Value { return Value{Key: f.Key()} }

func (v Value) pb() *pb.CoordValue {
	return &pb.CoordValue{Data: v.Data, Codec: v.Codec, Key: v.Key, Refs: v.Refs}
}

func waitMS(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

// coordinate makes one Coordinate call; values it returns are adopted
// (their holds counted as this client's).
func (c *Client) coordinate(ctx context.Context, what string, req *pb.CoordRequest) (*pb.CoordResponse, []Value, error) {
	if err := c.checkOpen(); err != nil {
		return nil, nil, err
	}
	r, err := c.rpc.Coordinate(ctx, req)
	if err != nil {
		return nil, nil, callError(ctx, what, err)
	}
	vals := make([]Value, len(r.GetValues()))
	c.mu.Lock()
	for i, v := range r.GetValues() {
		vals[i] = Value{Data: v.GetData(), Codec: v.GetCodec(), Key: v.GetKey(), Refs: v.GetRefs()}
		if c.holds != nil {
			if v.GetKey() != "" {
				c.holds[v.GetKey()]++
			}
			for _, k := range v.GetRefs() {
				c.holds[k]++
			}
		}
	}
	c.mu.Unlock()
	if r.GetTimedOut() {
		return r, vals, fmt.Errorf("%s %q: %w", what, req.GetName(), ErrCoordTimeout)
	}
	return r, vals, nil
}

// Variable is one shared value (Dask's Variable).
type Variable struct {
	c    *Client
	name string
}

// Variable returns the variable called name (created by its first Set).
func (c *Client) Variable(name string) *Variable { return &Variable{c, name} }

func (v *Variable) req(op pb.CoordOp) *pb.CoordRequest {
	return &pb.CoordRequest{Kind: pb.CoordKind_COORD_KIND_VARIABLE, Name: v.name, Op: op}
}

// Set stores value (a future's key must be held by some client then).
func (v *Variable) Set(ctx context.Context, value Value) error {
	req := v.req(pb.CoordOp_COORD_OP_SET)
	req.Value = value.pb()
	_, _, err := v.c.coordinate(ctx, "variable set", req)
	return err
}

// Get waits up to wait for the variable to have a value and returns it
// (ErrCoordTimeout after wait).
func (v *Variable) Get(ctx context.Context, wait time.Duration) (Value, error) {
	req := v.req(pb.CoordOp_COORD_OP_GET)
	req.TimeoutMs = waitMS(wait)
	r, vals, err := v.c.coordinate(ctx, "variable get", req)
	if err == nil && (!r.GetOk() || len(vals) == 0) {
		err = fmt.Errorf("variable get %q: %w", v.name, ErrCoordTimeout)
	}
	if err != nil {
		return Value{}, err
	}
	return vals[0], nil
}

// Delete clears the variable.
func (v *Variable) Delete(ctx context.Context) error {
	_, _, err := v.c.coordinate(ctx, "variable delete", v.req(pb.CoordOp_COORD_OP_DELETE))
	return err
}

// Queue is a shared FIFO (Dask's Queue).
type Queue struct {
	c       *Client
	name    string
	maxsize uint32
}

// Queue returns the queue called name; maxsize (0: no bound of its own)
// applies when this client's Put creates it.
func (c *Client) Queue(name string, maxsize uint32) *Queue { return &Queue{c, name, maxsize} }

func (q *Queue) req(op pb.CoordOp) *pb.CoordRequest {
	return &pb.CoordRequest{Kind: pb.CoordKind_COORD_KIND_QUEUE, Name: q.name, Op: op}
}

// Put appends value, waiting up to wait while the queue is full.
func (q *Queue) Put(ctx context.Context, value Value, wait time.Duration) error {
	req := q.req(pb.CoordOp_COORD_OP_PUT)
	req.Value, req.Limit, req.TimeoutMs = value.pb(), q.maxsize, waitMS(wait)
	r, _, err := q.c.coordinate(ctx, "queue put", req)
	if err == nil && !r.GetOk() {
		err = fmt.Errorf("queue put %q: full: %w", q.name, ErrCoordTimeout)
	}
	return err
}

// Get takes n items (n <= 1: one), waiting up to wait until there are n.
func (q *Queue) Get(ctx context.Context, n uint32, wait time.Duration) ([]Value, error) {
	req := q.req(pb.CoordOp_COORD_OP_GET)
	req.Count, req.TimeoutMs = n, waitMS(wait)
	r, vals, err := q.c.coordinate(ctx, "queue get", req)
	if err == nil && !r.GetOk() {
		err = fmt.Errorf("queue get %q: %w", q.name, ErrCoordTimeout)
	}
	return vals, err
}

// Size is the number of items in the queue.
func (q *Queue) Size(ctx context.Context) (int, error) {
	r, _, err := q.c.coordinate(ctx, "queue size", q.req(pb.CoordOp_COORD_OP_SIZE))
	if err != nil {
		return 0, err
	}
	return int(r.GetSize()), nil
}

// Event is a shared flag (Dask's Event).
type Event struct {
	c    *Client
	name string
}

// Event returns the event called name (cleared until someone sets it).
func (c *Client) Event(name string) *Event { return &Event{c, name} }

func (e *Event) call(ctx context.Context, op pb.CoordOp, wait time.Duration) (bool, error) {
	req := &pb.CoordRequest{Kind: pb.CoordKind_COORD_KIND_EVENT, Name: e.name, Op: op, TimeoutMs: waitMS(wait)}
	r, _, err := e.c.coordinate(ctx, "event", req)
	if errors.Is(err, ErrCoordTimeout) {
		return false, nil // Wait answers false at its timeout, as Dask's
	}
	if err != nil {
		return false, err
	}
	return r.GetOk(), nil
}

// Set sets the event, waking every waiter.
func (e *Event) Set(ctx context.Context) error {
	_, err := e.call(ctx, pb.CoordOp_COORD_OP_SET, 0)
	return err
}

// Clear clears the event.
func (e *Event) Clear(ctx context.Context) error {
	_, err := e.call(ctx, pb.CoordOp_COORD_OP_CLEAR, 0)
	return err
}

// Wait waits up to wait for the event to be set: true once it is.
func (e *Event) Wait(ctx context.Context, wait time.Duration) (bool, error) {
	return e.call(ctx, pb.CoordOp_COORD_OP_WAIT, wait)
}

// IsSet tells whether the event is set now.
func (e *Event) IsSet(ctx context.Context) (bool, error) {
	return e.call(ctx, pb.CoordOp_COORD_OP_WAIT, 0)
}

// Semaphore admits at most its number of lease holders at a time across
// the cluster (Dask's Semaphore; a Lock is one of one lease).
type Semaphore struct {
	c            *Client
	name         string
	max          uint32
	LeaseTimeout time.Duration // how long a holder that stops refreshing keeps a lease (default 30 s)
}

// Semaphore returns the semaphore called name with maxLeases leases
// (every user of a name must give the same number).
func (c *Client) Semaphore(name string, maxLeases uint32) *Semaphore {
	return &Semaphore{c: c, name: name, max: maxLeases, LeaseTimeout: 30 * time.Second}
}

// Lock returns the lock called name: a semaphore of one lease.
func (c *Client) Lock(name string) *Semaphore { return c.Semaphore(name, 1) }

// Lease is one acquired lease, refreshed in the background until
// Release.
type Lease struct {
	s    *Semaphore
	id   string
	stop chan struct{}
	once sync.Once
	done chan struct{}
}

func (s *Semaphore) req(op pb.CoordOp, lease string) *pb.CoordRequest {
	return &pb.CoordRequest{
		Kind: pb.CoordKind_COORD_KIND_SEMAPHORE, Name: s.name, Op: op, Lease: lease,
		Limit: s.max, LeaseTimeoutMs: uint32(s.LeaseTimeout.Milliseconds()),
	}
}

// Acquire waits up to wait for a lease: nil and ErrCoordTimeout (wrapped)
// when none came free in time.
func (s *Semaphore) Acquire(ctx context.Context, wait time.Duration) (*Lease, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("taskgrid: semaphore acquire: a lease id: %w", err)
	}
	req := s.req(pb.CoordOp_COORD_OP_ACQUIRE, hex.EncodeToString(id))
	req.TimeoutMs = waitMS(wait)
	r, _, err := s.c.coordinate(ctx, "semaphore acquire", req)
	if err == nil && !r.GetOk() {
		err = fmt.Errorf("semaphore acquire %q: %w", s.name, ErrCoordTimeout)
	}
	if err != nil {
		return nil, err
	}
	l := &Lease{s: s, id: req.GetLease(), stop: make(chan struct{}), done: make(chan struct{})}
	go l.refresh()
	return l, nil
}

// refresh keeps the lease alive at a fifth of its timeout, as Dask does.
func (l *Lease) refresh() {
	defer close(l.done)
	t := time.NewTicker(max(l.s.LeaseTimeout/5, 20*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), l.s.LeaseTimeout)
			r, _, err := l.s.c.coordinate(ctx, "semaphore refresh", l.s.req(pb.CoordOp_COORD_OP_REFRESH, l.id))
			cancel()
			if errors.Is(err, ErrClosed) || (err == nil && !r.GetOk()) {
				return // the client closed, or the lease expired
			}
		}
	}
}

// Release gives the lease back; false when it had expired already.
func (l *Lease) Release(ctx context.Context) (bool, error) {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	r, _, err := l.s.c.coordinate(ctx, "semaphore release", l.s.req(pb.CoordOp_COORD_OP_RELEASE, l.id))
	if err != nil {
		return false, err
	}
	return r.GetOk(), nil
}

// Value is the number of leases held now.
func (s *Semaphore) Value(ctx context.Context) (int, error) {
	r, _, err := s.c.coordinate(ctx, "semaphore value", s.req(pb.CoordOp_COORD_OP_SIZE, ""))
	if err != nil {
		return 0, err
	}
	return int(r.GetSize()), nil
}
