// SPDX-License-Identifier: Apache-2.0

// lend.go: lent links, so that tasks waiting on nested work never deadlock
// a full cluster.
//
// A task that waits on nested work secedes: its slot goes to this worker's
// queued tasks (executor.go). That alone is not enough: the scheduler
// still counts the waiting task against this worker's threads (and
// prefetch), so once every worker holds only waiting parents it sends them
// no children. Until the protocol can report a seceded task, a task still
// waiting after lendDelay lends its thread to the scheduler as a separate
// one-thread link: a Worker named "<name>-lent-N" on the same connection,
// with the same functions, no resources and no launch id, which the
// scheduler feeds like any worker. When the task's last wait ends, the
// link lingers: it runs what it is still sent, is reused by the next task
// that waits, and disconnects once it has had no work for lingerFor. (It
// cannot disconnect at once: the scheduler may have assignments to it in
// flight, which it would count as lost with the link.) A waiting task thus
// always frees one thread's worth of capacity, at any nesting depth.

package taskgrid

import (
	"context"
	"fmt"
	"time"
)

const (
	// lendDelay: waits shorter than this lend nothing (most waits on
	// futures that are about to finish).
	lendDelay = 20 * time.Millisecond
	// lingerFor: a link no longer lent disconnects after this long
	// without work.
	lingerFor = time.Second
)

type lending struct {
	timer *time.Timer
	link  *Worker // set once lent
}

// linkState is a lent link's own state, guarded by its lender's lentMu.
type linkState struct {
	stop        context.CancelFunc
	lingerSince time.Time // zero while lent
	lastAssign  time.Time
}

// onSecede (under the executor's lock) arms the lending of t's thread.
func (w *Worker) onSecede(t *task) {
	w.lentMu.Lock()
	defer w.lentMu.Unlock()
	if w.runCtx == nil || w.runCtx.Err() != nil {
		return
	}
	l := &lending{}
	l.timer = time.AfterFunc(lendDelay, func() { w.lend(t, l) })
	w.lent[t] = l
}

// lend lends t's thread: to a lingering link, else to a new one, unless t
// rejoined meanwhile.
func (w *Worker) lend(t *task, l *lending) {
	w.lentMu.Lock()
	defer w.lentMu.Unlock()
	if w.lent[t] != l || w.runCtx.Err() != nil {
		return
	}
	if n := len(w.idleLinks); n > 0 {
		l.link = w.idleLinks[n-1]
		w.idleLinks = w.idleLinks[:n-1]
		l.link.link.lingerSince = time.Time{}
		return
	}
	w.nlent++
	link := &Worker{address: w.address, cfg: w.cfg, funcs: w.funcs, started: true, lender: w, data: w.data}
	link.cfg.nthreads = 1
	link.cfg.resources = nil
	link.cfg.name = fmt.Sprintf("%s-lent-%d", w.Name(), w.nlent)
	ctx, cancel := context.WithCancel(w.runCtx)
	link.link = &linkState{stop: cancel}
	l.link = link
	w.lentWG.Add(1)
	go func() {
		defer w.lentWG.Done()
		link.serve(ctx, w.conn)
	}()
}

// onRejoin (under the executor's lock) ends the lending of t's thread: its
// link, if one was lent, lingers.
func (w *Worker) onRejoin(t *task) {
	w.lentMu.Lock()
	defer w.lentMu.Unlock()
	l := w.lent[t]
	delete(w.lent, t)
	if l == nil {
		return
	}
	l.timer.Stop()
	if l.link != nil {
		l.link.link.lingerSince = time.Now()
		w.idleLinks = append(w.idleLinks, l.link)
	}
}

// noteAssign (on a link) records that work arrived.
func (w *Worker) noteAssign() {
	if p := w.lender; p != nil {
		p.lentMu.Lock()
		w.link.lastAssign = time.Now()
		p.lentMu.Unlock()
	}
}

// lingerLoop (on a link; serve starts it) stops the link once it has
// lingered idle for lingerFor.
func (w *Worker) lingerLoop(ctx context.Context) {
	tick := time.NewTicker(lingerFor / 4)
	defer tick.Stop()
	p := w.lender
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !w.exec.idle() {
			continue
		}
		p.lentMu.Lock()
		s := w.link
		since := s.lingerSince
		if s.lastAssign.After(since) {
			since = s.lastAssign
		}
		if !s.lingerSince.IsZero() && time.Since(since) >= lingerFor {
			for i, x := range p.idleLinks {
				if x == w {
					p.idleLinks = append(p.idleLinks[:i], p.idleLinks[i+1:]...)
					break
				}
			}
			p.lentMu.Unlock()
			s.stop()
			return
		}
		p.lentMu.Unlock()
	}
}
