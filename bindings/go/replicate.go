// SPDX-License-Identifier: Apache-2.0

// replicate.go: Client.Replicate, copies of results held on workers to
// more workers (Scheduler/Replicate, as Dask's Client.replicate), and the
// error naming the keys that could not be copied.

package taskgrid

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// replicateGrace is how much longer than the scheduler's own limit the
// call waits for its answer.
const replicateGrace = 2 * time.Second

// ReplicateOption configures Client.Replicate.
type ReplicateOption func(*replicateConfig)

type replicateConfig struct {
	workers []string
	timeout time.Duration
}

// ReplicateTo lets the copies go only to workers with these names (holders
// elsewhere still count toward n).
func ReplicateTo(names ...string) ReplicateOption {
	return func(c *replicateConfig) { c.workers = names }
}

// ReplicateTimeout bounds the wait for the copies (default: ctx's
// deadline); copies still under way then go on, and their keys fail with
// error type "tg.Timeout".
func ReplicateTimeout(d time.Duration) ReplicateOption {
	return func(c *replicateConfig) { c.timeout = d }
}

// replicateState is the state a key's replication error implies
// (StatePending for an unfinished one).
var replicateState = map[string]TaskState{
	"tg.UnknownKey": StateReleased, "tg.Erred": StateErred,
	"tg.CopyFailed": StateMemory, "tg.Timeout": StateMemory,
}

// ReplicateError names the keys Replicate could not copy, each with a
// *TaskError: type "tg.UnknownKey" (errors.Is ErrUnknownKey),
// "tg.NotFinished", "tg.Erred", "tg.CopyFailed" (which worker, and why)
// or "tg.Timeout". errors.As finds the first *TaskError.
type ReplicateError struct {
	Keys []*TaskError // in the order of the futures given
}

func (e *ReplicateError) Error() string {
	msg := fmt.Sprintf("taskgrid: replicate: %d of the keys could not be copied", len(e.Keys))
	if len(e.Keys) > 0 {
		k := e.Keys[0]
		msg += fmt.Sprintf("; %q: %s: %s", k.Key, k.Type, k.Message)
	}
	return msg
}

// Unwrap gives the per-key errors to errors.Is and errors.As.
func (e *ReplicateError) Unwrap() []error {
	errs := make([]error, len(e.Keys))
	for i, k := range e.Keys {
		errs[i] = k
	}
	return errs
}

// Replicate copies the results of finished futures, worker to worker, so
// that each is held by at least n workers (n == 0: every worker), and
// waits until the copies are done. The scheduler chooses the workers: not
// paused, not holding it yet, the most free memory first. A copy counts
// toward its worker's memory like a result it made, keeps the result when
// another holder is lost (nothing is recomputed), and is freed with the
// result. A result small enough to travel inline lives in the scheduler
// and is left as it is (0 holders, no error). It does not wait for the
// futures: an unfinished one fails with "tg.NotFinished".
//
// It returns each key's number of holders, and a *ReplicateError for the
// keys that could not be replicated (the map is filled either way), or
// the failure of the call.
func (c *Client) Replicate(ctx context.Context, futures []*Future, n int, opts ...ReplicateOption) (map[string]int, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("taskgrid: replicate: n is %d (0 for every worker, or at least 1)", n)
	}
	if len(futures) > maxBatch {
		return nil, fmt.Errorf("taskgrid: replicate: %d futures (at most %d per call)", len(futures), maxBatch)
	}
	var cfg replicateConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.timeout == 0 {
		if dl, ok := ctx.Deadline(); ok {
			cfg.timeout = time.Until(dl) - replicateGrace
		}
	}
	req := &pb.ReplicateRequest{N: uint32(n), Workers: cfg.workers}
	for _, f := range futures {
		if f == nil {
			return nil, errors.New("taskgrid: replicate: a nil future")
		}
		req.Keys = append(req.Keys, f.Key())
	}
	if cfg.timeout > 0 {
		req.TimeoutMs = uint32(min(cfg.timeout.Milliseconds(), 1<<32-1))
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout+replicateGrace)
		defer cancel()
	}
	r, err := c.rpc.Replicate(ctx, req)
	if err != nil {
		return nil, callError(ctx, "replicate", err)
	}
	holders := make(map[string]int, len(r.GetKeys()))
	var bad []*TaskError
	for _, k := range r.GetKeys() {
		holders[k.GetKey()] = int(k.GetHolders())
		if pe := k.GetError(); pe != nil {
			e := &TaskError{Key: k.GetKey(), State: replicateState[pe.GetType()], Type: pe.GetType(), Message: pe.GetMessage()}
			bad = append(bad, e)
		}
	}
	if len(bad) > 0 {
		return holders, &ReplicateError{Keys: bad}
	}
	return holders, nil
}
