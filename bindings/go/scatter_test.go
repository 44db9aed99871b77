// SPDX-License-Identifier: Apache-2.0

// scatter_test.go: Client.Scatter against the real C scheduler. A 20 MB
// object scattered once feeds 10 tasks on two Go workers (held by the one
// that ran tg.echo, fetched by the other); equal data gives the same key
// in Go as in Python and C; data over the message limit is refused before
// anything is sent.

package taskgrid_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

func TestScatterFeedsManyTasksOnTwoWorkers(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	funcs := map[string]taskgrid.Func{
		// go.check(I): I plus the length of its dependency if every byte
		// is as scattered, else -1.
		"go.check": func(_ context.Context, in []byte, deps [][]byte) ([]byte, error) {
			i, err := strconv.Atoi(string(in))
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(deps[0], pattern(20_000_000)) {
				return []byte("-1"), nil
			}
			return []byte(strconv.Itoa(len(deps[0]) + i)), nil
		},
	}
	goWorker(t, addr, funcs, taskgrid.WithNThreads(2), taskgrid.WithName("g0"))
	goWorker(t, addr, funcs, taskgrid.WithNThreads(2), taskgrid.WithName("g1"))
	waitForWorkers(t, c, 2)
	ctx := testContext(t)

	data := pattern(20_000_000)
	f, err := c.Scatter(ctx, data, taskgrid.ScatterWorkers("g0"))
	if err != nil {
		t.Fatal(err)
	}
	if want := taskgrid.ScatterKeyOf(data, "raw"); f.Key() != want {
		t.Fatalf("key %q, want %q", f.Key(), want)
	}
	again, err := c.Scatter(ctx, data)
	if err != nil || again.Key() != f.Key() {
		t.Fatalf("scattering equal data again: %v, %v; want key %q", again, err, f.Key())
	}
	tasks := make([]taskgrid.Task, 10)
	for i := range tasks {
		tasks[i] = taskgrid.Task{Func: "go.check", Input: []byte(strconv.Itoa(i)), Deps: []string{f.Key()},
			Workers: []string{[]string{"g0", "g1"}[i%2]}}
	}
	fs, err := c.SubmitMany(ctx, tasks)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Gather(ctx, fs...); err != nil {
		t.Fatal(err)
	}
	for i, g := range fs {
		got, _ := g.Result(ctx)
		if want := strconv.Itoa(20_000_000 + i); string(got) != want {
			t.Errorf("task %d: %s, want %s", i, got, want)
		}
	}
	got, err := f.Result(ctx)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the scattered data gathered back: %d bytes, %v", len(got), err)
	}
}

func TestScatterKeysAndLimit(t *testing.T) {
	// The same key as Python's client.scatter(b"hello") and the C SDK's.
	if got := taskgrid.ScatterKeyOf([]byte("hello"), ""); got != "bytes-b283d65915fb8ea11ff200265bdee351" {
		t.Errorf("ScatterKeyOf(hello) = %q", got)
	}
	if a, b := taskgrid.ScatterKeyOf([]byte("x"), "raw"), taskgrid.ScatterKeyOf([]byte("x"), "json"); a == b {
		t.Errorf("the codec is part of the key: both %q", a)
	}
	_, c := cCluster(t, 1, 1)
	ctx := testContext(t)
	_, err := c.Scatter(ctx, make([]byte, 65*mib))
	if !errors.Is(err, taskgrid.ErrScatterTooLarge) {
		t.Fatalf("65 MiB: %v, want ErrScatterTooLarge", err)
	}
	for _, want := range []string{"68157440 bytes", "67043328-byte limit"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// On a C worker: tg.echo keeps the codec.
	f, err := c.Scatter(ctx, []byte("[1,2]"), taskgrid.ScatterCodec("json"), taskgrid.ScatterKey("scattered-json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Submit(ctx, taskgrid.Task{Func: "tg.sum", Deps: []string{f.Key()}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Result(ctx); err != nil || string(got) != "3" {
		t.Fatalf("tg.sum of the scattered array: %q, %v", got, err)
	}
	if got, err := f.Result(ctx); err != nil || string(got) != "[1,2]" || f.Key() != "scattered-json" || f.Codec() != "json" {
		t.Errorf("the scattered array: %q, %v; key %q codec %q", got, err, f.Key(), f.Codec())
	}
}
