// SPDX-License-Identifier: Apache-2.0

// helpers_test.go: what the tests of package taskgrid share: a client per
// test, in-process Go workers stopped at the end of the test, and waiting
// for workers to register.

package taskgrid_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

// testTimeout bounds every wait of a test.
const testTimeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// dial connects a client that is closed when the test ends.
func dial(t *testing.T, addr string, opts ...taskgrid.Option) *taskgrid.Client {
	t.Helper()
	c, err := taskgrid.Dial(testContext(t), addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

// goWorker runs an in-process Go worker with the functions in funcs until
// the test ends (or stop is called), and checks that Run returned nil.
func goWorker(t *testing.T, addr string, funcs map[string]taskgrid.Func, opts ...taskgrid.Option) (w *taskgrid.Worker, stop func()) {
	t.Helper()
	opts = append([]taskgrid.Option{taskgrid.WithLogger(tgtest.Logger(t))}, opts...)
	w = taskgrid.NewWorker(addr, opts...)
	for name, fn := range funcs {
		if err := w.Register(name, fn); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("worker Run did not return after its context was cancelled")
		}
	}
	t.Cleanup(stop)
	return w, stop
}

// waitForWorkers waits until exactly n workers are connected. (Tests count
// workers rather than look for functions: the scheduler's Status does not
// list the functions of workers yet.)
func waitForWorkers(t *testing.T, c *taskgrid.Client, n int) {
	t.Helper()
	tgtest.Eventually(t, 10*time.Second, func() error {
		st, err := c.Status(testContext(t))
		if err != nil {
			return err
		}
		if len(st.Workers) != n {
			return fmt.Errorf("%d workers connected, want %d", len(st.Workers), n)
		}
		return nil
	})
}

// cluster starts a scheduler (no launcher) and n C workers with nthreads
// each, and returns its address once the workers are connected.
func cCluster(t *testing.T, nworkers, nthreads int) (addr string, c *taskgrid.Client) {
	t.Helper()
	addr = tgtest.Scheduler(t, "--launcher", "none")
	for i := range nworkers {
		tgtest.CWorker(t, addr, "--nthreads", fmt.Sprint(nthreads), "--name", fmt.Sprintf("c%d", i))
	}
	c = dial(t, addr)
	waitForWorkers(t, c, nworkers)
	return addr, c
}

func jsonTask(fn, input string, deps ...string) taskgrid.Task {
	return taskgrid.Task{Func: fn, Input: []byte(input), Codec: "json", Deps: deps}
}
