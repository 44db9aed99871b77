// SPDX-License-Identifier: Apache-2.0

// calls_test.go: Client.WhoHas and Client.Retire against a real scheduler
// and two in-process Go workers: a 2 MB result made on g0 is named as
// held by g0 (a small one by the scheduler); retiring an unknown name
// fails and retires nothing; retiring g0 moves its result to g1 before
// g0 leaves, so the result is still there, made once.

package taskgrid_test

import (
	"context"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

func TestWhoHasAndRetire(t *testing.T) {
	const size = 2 << 20
	var runs atomic.Int32
	funcs := map[string]taskgrid.Func{
		"test.make": func(ctx context.Context, in []byte, deps [][]byte) ([]byte, error) {
			runs.Add(1)
			return []byte(strings.Repeat("x", size)), nil
		},
	}
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	for _, name := range []string{"g0", "g1"} {
		goWorker(t, addr, funcs, taskgrid.WithName(name))
	}
	waitForWorkers(t, c, 2)
	ctx := testContext(t)

	big, err := c.Submit(ctx, taskgrid.Task{Key: "calls-big", Func: "test.make", Workers: []string{"g0"}})
	if err != nil {
		t.Fatal(err)
	}
	small, err := c.Submit(ctx, taskgrid.Task{Key: "calls-small", Func: "tg.echo", Input: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*taskgrid.Future{big, small} {
		if _, err := f.Result(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wh, err := c.WhoHas(ctx, big.Key(), small.Key(), "calls-nope")
	want := map[string][]string{"calls-big": {"g0"}, "calls-small": {taskgrid.InlineHolder}, "calls-nope": nil}
	if err != nil || !reflect.DeepEqual(wh, want) {
		t.Fatalf("WhoHas = %v, %v; want %v", wh, err, want)
	}

	if _, err := c.Retire(ctx, "ghost"); err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("Retire(ghost) = %v; want an error naming it", err)
	}
	if got, err := c.Retire(ctx, "g0"); err != nil || !reflect.DeepEqual(got, []string{"g0"}) {
		t.Fatalf("Retire(g0) = %v, %v", got, err)
	}
	waitForWorkers(t, c, 1) // at least one; now wait for g0 to leave
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Workers) == 1 && s.Workers[0].Name == "g1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("g0 still connected 20 s after Retire: %+v", s.Workers)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if wh, err := c.WhoHas(ctx, big.Key()); err != nil || !reflect.DeepEqual(wh[big.Key()], []string{"g1"}) {
		t.Fatalf("after retiring g0, WhoHas = %v, %v; want g1", wh, err)
	}
	got, err := big.Result(ctx)
	if err != nil || len(got) != size {
		t.Fatalf("the result after g0 left: %d bytes, %v", len(got), err)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("test.make ran %d times, want once (moved, not recomputed)", n)
	}
}
