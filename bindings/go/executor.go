// SPDX-License-Identifier: Apache-2.0

// executor.go: the worker's task pool: a queue of assigned tasks (higher
// priority first, FIFO among equals) and nslots slots. Each started task
// runs on its own goroutine and holds a slot until it returns, or until it
// secedes to wait on nested work (the slot goes to the next task; the task
// takes one back when it rejoins, ahead of queued tasks). Cancelling a key
// drops it from the queue or cancels the context of its run. Depends on
// nothing but the standard library; the link (worker.go) feeds it.

package taskgrid

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

type executor struct {
	mu       sync.Mutex
	nslots   int
	active   int         // tasks holding a slot
	running  int         // tasks started and not returned, seceded ones included
	queue    taskQueue   // assigned, not started
	rejoins  []*rejoiner // seceded tasks waiting for a slot, FIFO
	byKey    map[string][]*task
	seq      uint64
	changed  chan struct{} // poked (never blocks) when a task ends
	runTask  func(*task)   // called on a new goroutine per started task
	idleWait []chan struct{}
	// Called under mu (they must not block) when a task secedes (its first
	// nested wait, while it held a slot) and when its last nested wait
	// ends; nil: nothing to do.
	onSecede, onRejoin func(*task)
}

type rejoiner struct {
	t       *task
	granted chan struct{}
}

// taskStates, guarded by executor.mu.
const (
	taskQueued = iota
	taskRunning
	taskDone
)

func newExecutor(nslots int, run func(*task)) *executor {
	return &executor{
		nslots:  nslots,
		byKey:   make(map[string][]*task),
		changed: make(chan struct{}, 1),
		runTask: run,
	}
}

// submit queues tasks and starts as many as slots allow.
func (e *executor) submit(ts []*task) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range ts {
		e.seq++
		t.seq = e.seq
		t.state = taskQueued
		heap.Push(&e.queue, t)
		e.byKey[t.key] = append(e.byKey[t.key], t)
	}
	e.dispatchLocked()
}

// dispatchLocked hands free slots to rejoining tasks first, then to queued
// ones.
func (e *executor) dispatchLocked() {
	for e.active < e.nslots && len(e.rejoins) > 0 {
		r := e.rejoins[0]
		e.rejoins = e.rejoins[1:]
		e.active++
		r.t.holdsSlot = true
		close(r.granted)
	}
	for e.active < e.nslots && e.queue.Len() > 0 {
		t := heap.Pop(&e.queue).(*task)
		t.state = taskRunning
		t.holdsSlot = true
		e.active++
		e.running++
		go e.runTask(t)
	}
}

// finish records that t's function returned. deliver, called unless t was
// cancelled, hands its outcome on; it runs under the lock, so that a cancel
// cannot slip in between and a waiter that sees the executor idle also sees
// every outcome delivered.
func (e *executor) finish(t *task, deliver func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !t.cancelled {
		deliver()
	}
	t.state = taskDone
	if t.holdsSlot {
		t.holdsSlot = false
		e.active--
	}
	e.running--
	e.forgetLocked(t)
	e.dispatchLocked()
	e.pokeLocked()
}

func (e *executor) pokeLocked() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
	if e.queue.Len() == 0 && e.running == 0 {
		for _, ch := range e.idleWait {
			close(ch)
		}
		e.idleWait = nil
	}
}

func (e *executor) forgetLocked(t *task) {
	ts := e.byKey[t.key]
	for i, x := range ts {
		if x == t {
			ts = append(ts[:i], ts[i+1:]...)
			break
		}
	}
	if len(ts) == 0 {
		delete(e.byKey, t.key)
	} else {
		e.byKey[t.key] = ts
	}
}

// cancel drops queued runs of key and cancels running ones; it returns how
// many there were.
func (e *executor) cancel(key string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.byKey[key]
	for _, t := range ts {
		e.cancelLocked(t)
	}
	return len(ts)
}

func (e *executor) cancelLocked(t *task) {
	t.cancelled = true
	switch t.state {
	case taskQueued:
		heap.Remove(&e.queue, t.index)
		t.state = taskDone
		e.forgetLocked(t)
		t.cancel()
	case taskRunning:
		t.cancel()
	}
	e.pokeLocked()
}

// takeQueued removes every queued task and returns them (to hand back).
func (e *executor) takeQueued() []*task {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*task, 0, e.queue.Len())
	for e.queue.Len() > 0 {
		t := heap.Pop(&e.queue).(*task)
		t.state = taskDone
		t.cancelled = true
		e.forgetLocked(t)
		t.cancel()
		out = append(out, t)
	}
	e.pokeLocked()
	return out
}

// cancelAll drops the queue and cancels every running task (the session
// they belong to is gone).
func (e *executor) cancelAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	var all []*task
	for _, ts := range e.byKey {
		all = append(all, ts...)
	}
	for _, t := range all {
		e.cancelLocked(t)
	}
}

// idle reports whether nothing is queued or running.
func (e *executor) idle() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.queue.Len() == 0 && e.running == 0
}

// waitIdle waits until nothing is queued or running, at most d.
func (e *executor) waitIdle(d time.Duration) bool {
	e.mu.Lock()
	if e.queue.Len() == 0 && e.running == 0 {
		e.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	e.idleWait = append(e.idleWait, ch)
	e.mu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
		return false
	}
}

// secede gives t's slot to the next task while t waits on nested work.
// Nested waits count: only the first secedes.
func (e *executor) secede(t *task) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t.waits++; t.waits == 1 && t.holdsSlot {
		t.holdsSlot = false
		e.active--
		e.dispatchLocked()
		if e.onSecede != nil {
			e.onSecede(t)
		}
	}
}

// rejoin takes a slot back for t after its last nested wait, ahead of
// queued tasks. If ctx ends first, t goes on without a slot (it was
// cancelled and is about to return).
func (e *executor) rejoin(ctx context.Context, t *task) {
	e.mu.Lock()
	if t.waits--; t.waits == 0 && e.onRejoin != nil {
		e.onRejoin(t)
	}
	if t.waits > 0 || t.holdsSlot || t.state != taskRunning {
		e.mu.Unlock()
		return
	}
	if e.active < e.nslots && len(e.rejoins) == 0 {
		e.active++
		t.holdsSlot = true
		e.mu.Unlock()
		return
	}
	r := &rejoiner{t: t, granted: make(chan struct{})}
	e.rejoins = append(e.rejoins, r)
	e.mu.Unlock()
	select {
	case <-r.granted:
	case <-ctx.Done():
		e.mu.Lock()
		for i, x := range e.rejoins {
			if x == r {
				e.rejoins = append(e.rejoins[:i], e.rejoins[i+1:]...)
				break
			}
		}
		e.mu.Unlock()
	}
}

// taskQueue is a heap: higher priority first, then lower sequence number.
type taskQueue []*task

func (q taskQueue) Len() int { return len(q) }
func (q taskQueue) Less(i, j int) bool {
	if q[i].priority != q[j].priority {
		return q[i].priority > q[j].priority
	}
	return q[i].seq < q[j].seq
}
func (q taskQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index = i
	q[j].index = j
}
func (q *taskQueue) Push(x any) {
	t := x.(*task)
	t.index = len(*q)
	*q = append(*q, t)
}
func (q *taskQueue) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return t
}
