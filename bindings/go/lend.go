// SPDX-License-Identifier: Apache-2.0

// lend.go: seceded tasks, so that tasks waiting on nested work never
// deadlock a full cluster.
//
// A task that waits on nested work secedes: its slot goes to this worker's
// queued tasks (executor.go), and the scheduler is told
// (WorkerMessage.secessions), so that it stops counting the task against
// this worker's threads and may send another task for the free slot. When
// the task's last wait ends it rejoins: the scheduler counts it again at
// once (sending nothing new while this worker is over its threads) and the
// task waits for a slot here, ahead of queued tasks. A waiting task thus
// always frees one thread's worth of capacity, at any nesting depth, and
// no more than nthreads tasks that have not seceded run at once.

package taskgrid

import pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"

// onSecede (under the executor's lock) tells the scheduler that t gave its
// slot back.
func (w *Worker) onSecede(t *task) { t.sess.out.pushSecession(t.key, false) }

// onRejoin (under the executor's lock) tells the scheduler that t wants
// its slot back.
func (w *Worker) onRejoin(t *task) { t.sess.out.pushSecession(t.key, true) }

// pushSecession queues a secession of a running task, in order.
func (o *outbox) pushSecession(key string, rejoined bool) {
	o.mu.Lock()
	if !o.aborted {
		o.secessions = append(o.secessions, &pb.Secession{Key: key, Rejoined: rejoined})
	}
	o.mu.Unlock()
	o.poke()
}
