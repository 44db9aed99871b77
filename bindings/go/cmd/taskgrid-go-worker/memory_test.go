// SPDX-License-Identifier: Apache-2.0

// memory_test.go: the memory flags of the example worker: the scheduler's
// launcher passes --memory-limit on and Status shows it; over the
// terminate fraction the worker exits with status 3, saying why; bad
// values are usage errors.

package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/cluster"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

func TestMemoryFlagsUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"tcp://127.0.0.1:1", "--memory-limit", "lots"},
		{"tcp://127.0.0.1:1", "--memory-target", "1.5"},
		{"tcp://127.0.0.1:1", "--memory-pause", "half"},
		{"tcp://127.0.0.1:1", "--memory-terminate", "-1"},
	} {
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

func dialFor(t *testing.T, addr string) (context.Context, *taskgrid.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, err := taskgrid.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return ctx, c
}

// workerLimit waits for one worker and returns its memory limit.
func workerLimit(t *testing.T, ctx context.Context, c *taskgrid.Client) uint64 {
	t.Helper()
	var limit uint64
	tgtest.Eventually(t, 10*time.Second, func() error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if len(st.Workers) != 1 || st.Workers[0].RSS == 0 {
			return fmt.Errorf("workers %+v, want one that sent a memory report", st.Workers)
		}
		limit = st.Workers[0].MemoryLimit
		return nil
	})
	return limit
}

func TestMemoryLimitFromTheLauncher(t *testing.T) {
	bin := tgtest.BuildGoWorker(t)
	addr := tgtest.Scheduler(t, "--worker-bin", bin, "--workers", "1", "--worker-memory-limit", "8MiB")
	ctx, c := dialFor(t, addr)
	if got := workerLimit(t, ctx, c); got != 8<<20 {
		t.Errorf("the launched worker's memory limit is %d, want 8 MiB", got)
	}
}

func TestMemoryTerminateExitsThree(t *testing.T) {
	bin := tgtest.BuildGoWorker(t)
	addr := tgtest.Scheduler(t, "--launcher", "none")
	p, err := cluster.Start("taskgrid-go-worker", bin, nil, addr, "--name", "x",
		"--memory-limit", "2MiB", "--memory-target", "none", "--memory-terminate", "0.5")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	ctx, c := dialFor(t, addr)
	if got := workerLimit(t, ctx, c); got != 2<<20 {
		t.Fatalf("memory limit %d, want 2 MiB", got)
	}
	// 1.5 MB held is over half of 2 MiB, and cannot spill.
	if _, err := c.Submit(ctx, taskgrid.Task{Func: "go.echo", Input: make([]byte, 1_500_000)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("the worker did not exit over the terminate fraction; its log:\n%s", p.Log())
	}
	var ee *exec.ExitError
	if err := p.Err(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit: %v, want status 3; log:\n%s", err, p.Log())
	}
	for _, want := range []string{
		"held results use 1500000 bytes in memory, over the terminate fraction 0.50 of the memory limit 2097152 bytes",
		"exiting with status 3",
	} {
		if !strings.Contains(p.Log(), want) {
			t.Errorf("the log does not say %q:\n%s", want, p.Log())
		}
	}
}
