// SPDX-License-Identifier: Apache-2.0

// datacopy.go: copies of held results the scheduler asks for
// (SchedulerMessage.copy, from a client's Replicate): each is fetched from
// its holders exactly as a task's held input is (datafetch.go, every chunk
// checked), then kept in this session's store like a result this worker
// made, and answered with WorkerMessage.copied. Copies run one after the
// other on a goroutine of their own, so the stream keeps flowing; a copy
// still under way when its session ends is cancelled and keeps nothing.

package taskgrid

import (
	"errors"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// copyResults starts the copies of one message.
func (s *session) copyResults(copies []*pb.Copy) {
	go func() {
		for _, c := range copies {
			r := &pb.CopyResult{Key: c.GetKey(), Ok: true}
			if err := s.copyOne(c); err != nil {
				r.Ok, r.Error = false, err.Error()
				s.w.cfg.logger.Warn("taskgrid: copy failed", "key", c.GetKey(), "size", c.GetSize(), "error", err)
			}
			s.out.pushCopied(r)
		}
	}()
}

// copyOne brings c's result into the session's store.
func (s *session) copyOne(c *pb.Copy) error {
	if s.store == nil {
		return errors.New("this worker has no data service to hold it")
	}
	if _, ok := s.store.get(c.GetKey()); ok {
		return nil
	}
	d := &pb.TaskResult{Key: c.GetKey(), Size: c.GetSize(), Codec: c.GetCodec(), Holders: c.GetHolders()}
	b, err := s.w.data.input(s.stream.Context(), s, d)
	if err != nil {
		var te *TaskError
		if errors.As(err, &te) {
			return errors.New(te.Message)
		}
		return err
	}
	if !s.store.put(c.GetKey(), b, c.GetCodec()) {
		return errors.New("the session ended")
	}
	s.w.data.held.add(len(b))
	return nil
}

// pushCopied queues the answer to one copy.
func (o *outbox) pushCopied(r *pb.CopyResult) {
	o.mu.Lock()
	if !o.aborted {
		o.copied = append(o.copied, r)
	}
	o.mu.Unlock()
	o.poke()
}
