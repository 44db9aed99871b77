// SPDX-License-Identifier: Apache-2.0

// replicate_test.go: Client.Replicate against a real scheduler and three
// in-process Go workers: a 2 MB result made on g0 is copied to g1 (the
// copy lands in g1's store), survives g0's exit without being made again,
// and feeds a dependent on g2; an unknown key and an inline result are
// answered for what they are.

package taskgrid_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

func TestReplicate(t *testing.T) {
	const size = 2 << 20
	var runs atomic.Int32
	funcs := map[string]taskgrid.Func{
		"test.make": func(ctx context.Context, in []byte, deps [][]byte) ([]byte, error) {
			runs.Add(1)
			return []byte(strings.Repeat("x", size)), nil
		},
		"test.len": func(ctx context.Context, in []byte, deps [][]byte) ([]byte, error) {
			return []byte(strings.Repeat("y", len(deps[0])/(1<<20))), nil
		},
	}
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	ws := map[string]*taskgrid.Worker{}
	stops := map[string]func(){}
	for _, name := range []string{"g0", "g1", "g2"} {
		ws[name], stops[name] = goWorker(t, addr, funcs, taskgrid.WithName(name))
	}
	waitForWorkers(t, c, 3)
	ctx := testContext(t)

	big, err := c.Submit(ctx, taskgrid.Task{Key: "replicate-big", Func: "test.make", Workers: []string{"g0"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.Result(ctx); err != nil {
		t.Fatal(err)
	}
	held, err := c.Replicate(ctx, []*taskgrid.Future{big}, 2, taskgrid.ReplicateTo("g1"))
	if err != nil || held[big.Key()] != 2 {
		t.Fatalf("Replicate = %v, %v; want 2 holders", held, err)
	}
	if s := ws["g1"].DataStats(); s.Held.N != 1 || s.Held.Bytes != size || s.Fetched.N != 1 {
		t.Errorf("g1's stats %+v: want the copy held and fetched once", s)
	}

	stops["g0"]()
	waitForWorkers(t, c, 2)
	use, err := c.Submit(ctx, taskgrid.Task{Key: "replicate-use", Func: "test.len", Deps: []string{big.Key()}, Workers: []string{"g2"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := use.Result(ctx); err != nil || string(got) != "yy" {
		t.Fatalf("the dependent on g2 = %q, %v; want 2 MiB of input", got, err)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("test.make ran %d times, want once (the copy on g1 served)", n)
	}

	_, err = c.Replicate(ctx, []*taskgrid.Future{c.Future("replicate-nope")}, 2)
	var re *taskgrid.ReplicateError
	if !errors.As(err, &re) || !errors.Is(err, taskgrid.ErrUnknownKey) || !strings.Contains(err.Error(), "replicate-nope") {
		t.Fatalf("an unknown key: %v; want a ReplicateError naming it, errors.Is ErrUnknownKey", err)
	}
	small, err := c.Submit(ctx, taskgrid.Task{Key: "replicate-small", Func: "tg.echo", Input: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Result(ctx); err != nil {
		t.Fatal(err)
	}
	if held, err := c.Replicate(ctx, []*taskgrid.Future{small}, 2); err != nil || held[small.Key()] != 0 {
		t.Fatalf("an inline result: %v, %v; want 0 holders and no error", held, err)
	}
}
