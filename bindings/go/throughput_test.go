// SPDX-License-Identifier: Apache-2.0

// throughput_test.go: 10,000 no-op tasks from Go through C workers and
// through a Go worker, timed (a smoke check of the batching; the numbers
// come from cmd/taskgrid-noop-rate).

package taskgrid_test

import (
	"context"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

// TestNoopThroughput pushes 10,000 no-op tasks from Go through C workers
// and through an in-process Go worker, in one SubmitMany and one Gather
// each, and logs the rate (go test -v -run Throughput). It asserts only
// that all of them finish: rates on shared machines (and under -race) are
// not a pass criterion. For numbers, use cmd/taskgrid-noop-rate.
func TestNoopThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput")
	}
	const n = 10000
	noop := func(context.Context, []byte, [][]byte) ([]byte, error) { return nil, nil }
	tests := []struct {
		name  string
		fn    string
		setup func(t *testing.T, addr string)
	}{
		{"C workers", "tg.noop", func(t *testing.T, addr string) {
			tgtest.CWorker(t, addr, "--nthreads", "1", "--name", "c1")
			tgtest.CWorker(t, addr, "--nthreads", "1", "--name", "c2")
		}},
		{"Go worker", "go.noop", func(t *testing.T, addr string) {
			goWorker(t, addr, map[string]taskgrid.Func{"go.noop": noop}, taskgrid.WithNThreads(2))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tgtest.Scheduler(t, "--launcher", "none")
			tt.setup(t, addr)
			c := dial(t, addr)
			ctx := testContext(t)
			// Warm up (connections, the scheduler's prefetch estimate).
			warm, err := c.SubmitMany(ctx, make100(tt.fn))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Gather(ctx, warm...); err != nil {
				t.Fatal(err)
			}
			tasks := make([]taskgrid.Task, n)
			for i := range tasks {
				tasks[i] = taskgrid.Task{Func: tt.fn}
			}
			start := time.Now()
			fs, err := c.SubmitMany(ctx, tasks)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Gather(ctx, fs...); err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			t.Logf("%d x %s from Go: %v, %.0f tasks/s", n, tt.fn, d.Round(time.Millisecond), n/d.Seconds())
		})
	}
}

func make100(fn string) []taskgrid.Task {
	ts := make([]taskgrid.Task, 100)
	for i := range ts {
		ts[i] = taskgrid.Task{Func: fn}
	}
	return ts
}
