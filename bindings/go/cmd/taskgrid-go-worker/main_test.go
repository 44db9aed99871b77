// SPDX-License-Identifier: Apache-2.0

// main_test.go: the example worker's command line, and the worker as the
// scheduler's launcher starts, uses and drains it.

package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

func TestParseResources(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]float64
		wantErr string
	}{
		{"", nil, ""},
		{"GPU=1", map[string]float64{"GPU": 1}, ""},
		{"GPU=2,MEM=4e9", map[string]float64{"GPU": 2, "MEM": 4e9}, ""},
		{"GPU", nil, "not NAME=AMOUNT"},
		{"=1", nil, "not NAME=AMOUNT"},
		{"GPU=-1", nil, "non-negative"},
		{"GPU=x", nil, "non-negative"},
		{"GPU=1,GPU=2", nil, "twice"},
	}
	for _, tt := range tests {
		got, err := parseResources(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseResources(%q) = %v, want an error with %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseResources(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	tests := [][]string{
		{},
		{"--nthreads", "2"},
		{"tcp://127.0.0.1:1", "--bogus"},
		{"tcp://127.0.0.1:1", "extra"},
		{"tcp://127.0.0.1:1", "--resources", "GPU"},
		{"tcp://127.0.0.1:1", "--log-level", "loud"},
		{"http://127.0.0.1:1"},
		{"tcp://127.0.0.1:1", "--data-listen", "no-port"}, // the worker cannot start
		{"tcp://127.0.0.1:1", "--data-listen", "none", "--data-clients"},
	}
	for _, args := range tests {
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

// TestLaunchedAndDrainedByTheScheduler: the scheduler's local launcher
// starts this worker like a C worker (--worker-bin), tasks run on it, and
// scaling down drains it: it finishes its work and exits with status 0.
func TestLaunchedAndDrainedByTheScheduler(t *testing.T) {
	bin := tgtest.BuildGoWorker(t)
	sched, addr := tgtest.SchedulerProcess(t, "--worker-bin", bin, "--nthreads", "2", "--log-level", "info")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := taskgrid.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Scale(ctx, 1); err != nil {
		t.Fatal(err)
	}
	workers := func(n int) func() error {
		return func() error {
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if len(st.Workers) != n {
				return fmt.Errorf("%d workers, want %d", len(st.Workers), n)
			}
			return nil
		}
	}
	tgtest.Eventually(t, 10*time.Second, workers(1))

	fs, err := c.SubmitMany(ctx, []taskgrid.Task{
		{Key: "d", Func: "go.double", Input: []byte("21"), Codec: "json"},
		{Key: "s", Func: "go.sum", Input: []byte("[1, 2]"), Codec: "json", Deps: []string{"d"}},
		{Key: "p", Func: "go.sumsquares", Input: []byte("3"), Codec: "json"},
		{Key: "slow", Func: "go.sleep", Input: []byte("0.3"), Codec: "json"},
		{Key: "f", Func: "go.fail", Input: []byte(`"nope"`), Codec: "json"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"d": 42, "s": 45, "p": 14}
	for _, f := range fs[:3] {
		var got float64
		if err := f.Decode(ctx, &got); err != nil || got != want[f.Key()] {
			t.Errorf("%s = %v, %v; want %v", f.Key(), got, err, want[f.Key()])
		}
	}
	var te *taskgrid.TaskError
	if _, err := fs[4].Result(ctx); !errors.As(err, &te) || te.Type != "go.Fail" || te.Message != "nope" {
		t.Errorf("go.fail: %v", err)
	}

	// Drain while go.sleep may still run: it finishes, then the worker
	// exits cleanly.
	if _, err := c.Scale(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := fs[3].Result(ctx); err != nil || string(got) != "0.3" {
		t.Errorf("go.sleep across the drain: %q, %v", got, err)
	}
	tgtest.Eventually(t, 10*time.Second, workers(0))
	tgtest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(sched.Log(), "exited with status 0") {
			return errors.New("the scheduler did not see the drained worker exit with status 0")
		}
		return nil
	})
}
