// SPDX-License-Identifier: Apache-2.0

// large_test.go: on a worker without a data service (every result
// inline), a result over the message limit fails its task at once with
// tg.ResultTooLarge, and the Go worker survives and keeps working; large
// results that together pass the limit still arrive.

package taskgrid_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

const mib = 1 << 20

func TestResultOverTheMessageLimit(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	calls := 0
	funcs := map[string]taskgrid.Func{
		// go.bytes(N): N bytes made on the worker.
		"go.bytes": func(_ context.Context, in []byte, _ [][]byte) ([]byte, error) {
			n, err := strconv.Atoi(string(in))
			return bytes.Repeat([]byte{'x'}, n), err
		},
		// go.calls: how many go.calls ran on this worker (it survived).
		"go.calls": func(context.Context, []byte, [][]byte) ([]byte, error) {
			calls++
			return []byte(strconv.Itoa(calls)), nil
		},
	}
	goWorker(t, addr, funcs, taskgrid.WithNThreads(1), taskgrid.WithName("g"), taskgrid.WithDataListen(taskgrid.DataNone))
	waitForWorkers(t, c, 1)
	ctx := testContext(t)
	run := func(fn, in string) ([]byte, error) {
		f, err := c.Submit(ctx, taskgrid.Task{Key: taskgrid.NewKey(fn), Func: fn, Input: []byte(in)})
		if err != nil {
			t.Fatal(err)
		}
		return f.Result(ctx)
	}
	if got, err := run("go.calls", ""); err != nil || string(got) != "1" {
		t.Fatalf("go.calls: %q, %v", got, err)
	}
	start := time.Now()
	_, err := run("go.bytes", strconv.Itoa(80*mib))
	var te *taskgrid.TaskError
	if !errors.As(err, &te) || !errors.Is(err, taskgrid.ErrResultTooLarge) {
		t.Fatalf("an 80 MiB result: %v, want a tg.ResultTooLarge TaskError", err)
	}
	for _, want := range []string{"83886080 bytes", "67043328-byte limit"} {
		if !strings.Contains(te.Message, want) {
			t.Errorf("message %q does not say %q", te.Message, want)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v: the worker was lost behind it", d)
	}
	// The same worker goes on: its second go.calls.
	if got, err := run("go.calls", ""); err != nil || string(got) != "2" {
		t.Fatalf("after: go.calls = %q, %v; want 2 (the same worker)", got, err)
	}
	// Large results that together pass the limit: one message each.
	var fs []*taskgrid.Future
	for range 4 {
		f, err := c.Submit(ctx, taskgrid.Task{Key: taskgrid.NewKey("go.bytes"), Func: "go.bytes", Input: []byte(strconv.Itoa(30 * mib))})
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	if err := c.Gather(ctx, fs...); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if got, _ := f.Result(ctx); len(got) != 30*mib {
			t.Errorf("%d bytes, want %d", len(got), 30*mib)
		}
	}
}
