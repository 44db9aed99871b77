// SPDX-License-Identifier: Apache-2.0

package taskgrid

import (
	"context"
	"errors"
	"fmt"
	"sort"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// InlineHolder is what WhoHas answers for a result small enough to travel
// inline: its bytes live in the scheduler, not on a worker.
const InlineHolder = "scheduler"

// WhoHas returns, for each key, the names of the workers holding its
// result (as Dask's Client.who_has, which gives addresses), sorted;
// InlineHolder alone for a result that lives in the scheduler; none for a
// key not in memory (unknown, pending, erred, released).
func (c *Client) WhoHas(ctx context.Context, keys ...string) (map[string][]string, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if len(keys) > maxBatch {
		return nil, fmt.Errorf("taskgrid: who has: %d keys (at most %d per call)", len(keys), maxBatch)
	}
	r, err := c.rpc.Status(ctx, &pb.StatusRequest{Keys: keys})
	if err != nil {
		return nil, callError(ctx, "who has", err)
	}
	out := make(map[string][]string, len(r.GetKeys()))
	for _, k := range r.GetKeys() {
		var holders []string
		switch {
		case k.GetState() != pb.TaskState_TASK_STATE_MEMORY:
		case k.GetInlineResult():
			holders = []string{InlineHolder}
		default:
			holders = append(holders, k.GetHolders()...)
			sort.Strings(holders)
		}
		out[k.GetKey()] = holders
	}
	return out, nil
}

// Retire drains the named workers (every worker when none is named) and
// stops them once nothing runs there, as Dask's retire_workers: the
// results a worker alone holds are first copied to another worker, so
// nothing is lost, and workers the scheduler's launcher started are not
// replaced. It answers once they are draining, with their names; a name
// no connected worker has fails the call (nothing retired). Needs the
// admin role on a TLS cluster.
func (c *Client) Retire(ctx context.Context, workers ...string) ([]string, error) {
	return c.retire(ctx, workers, false)
}

// Restart stops every worker once nothing runs there, whatever it holds
// (results held only there are lost, and computed again if still
// needed), and the scheduler's launcher starts a new worker for each one
// it had started (workers started by hand are not replaced). Cancel what
// should not run again first. Needs the admin role on a TLS cluster.
func (c *Client) Restart(ctx context.Context) ([]string, error) {
	return c.retire(ctx, nil, true)
}

func (c *Client) retire(ctx context.Context, workers []string, restart bool) ([]string, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	for _, w := range workers {
		if w == "" {
			return nil, errors.New("taskgrid: retire: an empty worker name")
		}
	}
	r, err := c.rpc.Retire(ctx, &pb.RetireRequest{Workers: workers, Restart: restart})
	if err != nil {
		return nil, callError(ctx, "retire", err)
	}
	return r.GetWorkers(), nil
}
