// SPDX-License-Identifier: Apache-2.0

// errors.go: task states, the TaskError that carries a failed task's error
// across languages, and how gRPC failures are wrapped. Depends on the
// generated stubs for the state values only.

package taskgrid

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// TaskState is the life cycle of a task: Waiting -> Ready -> Processing ->
// Memory | Erred | Cancelled, then Released. The values equal
// taskgrid.v1.TaskState.
type TaskState int32

const (
	// StatePending: submitted; this client has not heard of it yet.
	StatePending TaskState = TaskState(pb.TaskState_TASK_STATE_UNSPECIFIED)
	// StateWaiting: some dependency has not finished yet.
	StateWaiting TaskState = TaskState(pb.TaskState_TASK_STATE_WAITING)
	// StateReady: runnable; waits for a worker slot or a worker that fits.
	StateReady TaskState = TaskState(pb.TaskState_TASK_STATE_READY)
	// StateProcessing: running on a worker.
	StateProcessing TaskState = TaskState(pb.TaskState_TASK_STATE_PROCESSING)
	// StateMemory: finished; the result is available (final).
	StateMemory TaskState = TaskState(pb.TaskState_TASK_STATE_MEMORY)
	// StateErred: failed, or a dependency failed (final).
	StateErred TaskState = TaskState(pb.TaskState_TASK_STATE_ERRED)
	// StateCancelled: cancelled before it finished (final).
	StateCancelled TaskState = TaskState(pb.TaskState_TASK_STATE_CANCELLED)
	// StateReleased: unknown to the scheduler, released or never submitted
	// (final).
	StateReleased TaskState = TaskState(pb.TaskState_TASK_STATE_RELEASED)
)

var stateNames = [...]string{"pending", "waiting", "ready", "processing", "memory", "erred", "cancelled", "released"}

func (s TaskState) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("TaskState(%d)", int32(s))
}

// Final reports whether no further change is expected: memory, erred,
// cancelled or released.
func (s TaskState) Final() bool { return s >= StateMemory && s <= StateReleased }

var (
	// ErrCancelled matches (errors.Is) the TaskError of a cancelled task.
	ErrCancelled = errors.New("taskgrid: task cancelled")
	// ErrUnknownKey matches the TaskError of a key the scheduler does not
	// know (never submitted, or released): error type "tg.UnknownKey".
	ErrUnknownKey = errors.New("taskgrid: key not known to the scheduler")
	// ErrResultTooLarge matches the TaskError of a task whose result was
	// larger than one message can carry (error type "tg.ResultTooLarge",
	// from a Go, C or Python worker without a data service, which sends
	// every result inside a message, or from the scheduler for a Gather
	// that does not take chunks).
	ErrResultTooLarge = errors.New("taskgrid: result too large for one message")
	// ErrClosed is returned by calls on a closed Client.
	ErrClosed = errors.New("taskgrid: client is closed")
	// ErrNestingTooDeep matches the TaskError of a task submitted from
	// inside tasks nested deeper than the scheduler allows (its
	// --max-nesting-depth, 100 by default; error type "tg.NestingTooDeep",
	// whose message names the task, its depth, its parent and the limit):
	// a recursion through ClientFromContext that went too far. A parent
	// that returns its child's error passes it up unchanged.
	ErrNestingTooDeep = errors.New("taskgrid: tasks nested deeper than the scheduler allows")
	// ErrNotInTask is wrapped by the error of ClientFromContext when its
	// context is not that of a task running on a taskgrid Worker.
	ErrNotInTask = errors.New("not called with the context of a task running on a taskgrid Worker")
)

// TaskError is why a task failed, as reported by the worker that ran it (in
// whatever language) or by the scheduler. Get it with errors.As from the
// error of Future.Result or Client.Gather.
//
// A Go task function may also return a *TaskError to choose the error type
// other languages see (default "go.Error"); Key, State and OriginKey are
// then ignored.
type TaskError struct {
	Key       string    // the task whose result was asked for
	State     TaskState // StateErred, StateCancelled or StateReleased
	Type      string    // e.g. "ValueError", "tg.Fail", "tg.UnknownFunction"
	Message   string
	Traceback string // from the language that raised, if any
	// OriginKey is the key of the task that failed first when this one
	// inherited the error from a dependency; empty otherwise.
	OriginKey string
}

func (e *TaskError) Error() string {
	msg := fmt.Sprintf("taskgrid: task %q %s", e.Key, e.State)
	if e.Key == "" {
		msg = "taskgrid: task failed"
	}
	if e.Type != "" {
		msg += ": " + e.Type
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.OriginKey != "" {
		msg += fmt.Sprintf(" (from %q)", e.OriginKey)
	}
	return msg
}

// Is makes errors.Is(err, ErrCancelled), errors.Is(err, ErrUnknownKey),
// errors.Is(err, ErrResultTooLarge) and errors.Is(err, ErrNestingTooDeep)
// work.
func (e *TaskError) Is(target error) bool {
	switch target {
	case ErrResultTooLarge:
		return e.Type == "tg.ResultTooLarge"
	case ErrNestingTooDeep:
		return e.Type == "tg.NestingTooDeep"
	case ErrCancelled:
		return e.State == StateCancelled
	case ErrUnknownKey:
		return e.State == StateReleased
	}
	return false
}

// taskErrorOf turns an ERRED, CANCELLED or RELEASED result into a TaskError.
func taskErrorOf(r *pb.TaskResult) *TaskError {
	e := &TaskError{Key: r.GetKey(), State: TaskState(r.GetState())}
	if pe := r.GetError(); pe != nil {
		e.Type, e.Message, e.Traceback, e.OriginKey = pe.GetType(), pe.GetMessage(), pe.GetTraceback(), pe.GetOriginKey()
	}
	if e.Type == "" {
		switch e.State {
		case StateCancelled:
			e.Type = "tg.Cancelled"
		case StateReleased:
			e.Type = "tg.UnknownKey"
		default:
			e.Type = "tg.TaskError"
		}
	}
	return e
}

// callError wraps the failure of a call to the scheduler. The gRPC status
// stays reachable (status.Code, status.FromError); when the caller's context
// ended, errors.Is(err, context.DeadlineExceeded / context.Canceled) holds
// too.
func callError(ctx context.Context, op string, err error) error {
	ctxErr := ctx.Err()
	if _, ok := ctx.Deadline(); ok && ctxErr == nil && status.Code(err) == codes.DeadlineExceeded {
		// The call's deadline is ctx's, but the status (from the
		// scheduler, or gRPC's own timer) may beat ctx's timer by a hair.
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("taskgrid: %s: %w (%w)", op, ctxErr, err)
	}
	return fmt.Errorf("taskgrid: %s: %w", op, err)
}
