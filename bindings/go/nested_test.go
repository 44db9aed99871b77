// SPDX-License-Identifier: Apache-2.0

// nested_test.go: nested work never deadlocks a full cluster: more
// waiting parents than worker threads, at one level and recursively (6
// levels deep on 2 x 1 threads: it stalls if the scheduler counts waiting
// parents against their worker's thread), and cancelling a parent
// cancels the tasks it submitted. Misuse: ClientFromContext outside a
// task is a wrapped ErrNotInTask, and a recursion that never ends fails
// at the scheduler's --max-nesting-depth with ErrNestingTooDeep, quickly.

package taskgrid_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

// intArgAndClient: a nested task's one JSON integer argument, and its
// worker-side client.
func intArgAndClient(ctx context.Context, args []json.RawMessage) (int, *taskgrid.Client, error) {
	var n int
	if err := json.Unmarshal(args[0], &n); err != nil {
		return 0, nil, err
	}
	nc, err := taskgrid.ClientFromContext(ctx)
	return n, nc, err
}

// nestedFuncs: go.nparent(i) maps 4 go.nchild tasks and waits for them
// (Gather, or each Future.Result); go.tree(d) waits on two go.tree(d-1).
func nestedFuncs(perFuture bool) map[string]taskgrid.Func {
	child := taskgrid.JSONFunc(func(_ context.Context, args []json.RawMessage) (any, error) {
		var x float64
		err := json.Unmarshal(args[0], &x)
		return 2 * x, err
	})
	parent := taskgrid.JSONFunc(func(ctx context.Context, args []json.RawMessage) (any, error) {
		i, nc, err := intArgAndClient(ctx, args)
		if err != nil {
			return nil, err
		}
		var tasks []taskgrid.Task
		for j := range 4 {
			tasks = append(tasks, jsonTask("go.nchild", fmt.Sprint(10*i+j)))
		}
		fs, err := nc.SubmitMany(ctx, tasks)
		if err != nil {
			return nil, err
		}
		if !perFuture {
			if err := nc.Gather(ctx, fs...); err != nil {
				return nil, err
			}
		}
		sum := 0.0
		for _, f := range fs {
			var v float64
			if err := f.Decode(ctx, &v); err != nil {
				return nil, err
			}
			sum += v
		}
		return sum, nil
	})
	tree := taskgrid.JSONFunc(func(ctx context.Context, args []json.RawMessage) (any, error) {
		var d int
		if err := json.Unmarshal(args[0], &d); err != nil {
			return nil, err
		}
		if d == 0 {
			return 1, nil
		}
		nc, err := taskgrid.ClientFromContext(ctx)
		if err != nil {
			return nil, err
		}
		fs, err := nc.SubmitMany(ctx, []taskgrid.Task{
			jsonTask("go.tree", fmt.Sprint(d-1)), jsonTask("go.tree", fmt.Sprint(d-1))})
		if err != nil {
			return nil, err
		}
		if err := nc.Gather(ctx, fs...); err != nil {
			return nil, err
		}
		sum := 0.0
		for _, f := range fs {
			var v float64
			if err := f.Decode(ctx, &v); err != nil {
				return nil, err
			}
			sum += v
		}
		return sum, nil
	})
	// go.blocker runs until cancelled; go.nblock submits two and waits.
	blocker := taskgrid.JSONFunc(func(ctx context.Context, _ []json.RawMessage) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	nblock := taskgrid.JSONFunc(func(ctx context.Context, _ []json.RawMessage) (any, error) {
		nc, err := taskgrid.ClientFromContext(ctx)
		if err != nil {
			return nil, err
		}
		fs, err := nc.SubmitMany(ctx, []taskgrid.Task{jsonTask("go.blocker", "0"), jsonTask("go.blocker", "1")})
		if err != nil {
			return nil, err
		}
		return nil, nc.Gather(ctx, fs...)
	})
	// go.recurse(d) never stops: it submits go.recurse(d+1) (key
	// "grec-<d+1>") and waits on it, passing its error up.
	recurse := taskgrid.JSONFunc(func(ctx context.Context, args []json.RawMessage) (any, error) {
		d, nc, err := intArgAndClient(ctx, args)
		if err != nil {
			return nil, err
		}
		next := jsonTask("go.recurse", fmt.Sprint(d+1))
		next.Key = fmt.Sprintf("grec-%d", d+1)
		f, err := nc.Submit(ctx, next)
		if err != nil {
			return nil, err
		}
		var v float64
		return v, f.Decode(ctx, &v)
	})
	return map[string]taskgrid.Func{
		"go.nchild": child, "go.nparent": parent, "go.tree": tree,
		"go.blocker": blocker, "go.nblock": nblock, "go.recurse": recurse,
	}
}

// twoByOne: a scheduler (with `args`) and 2 Go workers x 1 thread.
func twoByOne(t *testing.T, perFuture bool, args ...string) *taskgrid.Client {
	addr := tgtest.Scheduler(t, append([]string{"--launcher", "none"}, args...)...)
	c := dial(t, addr)
	for i := range 2 {
		goWorker(t, addr, nestedFuncs(perFuture), taskgrid.WithNThreads(1), taskgrid.WithName(fmt.Sprintf("g%d", i)))
	}
	waitForWorkers(t, c, 2)
	return c
}

func TestMoreWaitingParentsThanSlots(t *testing.T) {
	for _, perFuture := range []bool{false, true} {
		t.Run(map[bool]string{false: "Gather", true: "Result"}[perFuture], func(t *testing.T) {
			c := twoByOne(t, perFuture)
			ctx := testContext(t)
			var tasks []taskgrid.Task
			for i := range 6 {
				tasks = append(tasks, jsonTask("go.nparent", fmt.Sprint(i)))
			}
			fs, err := c.SubmitMany(ctx, tasks)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Gather(ctx, fs...); err != nil {
				t.Fatalf("6 waiting parents on 2 x 1 threads: %v", err)
			}
			for i, f := range fs {
				var got float64
				if err := f.Decode(ctx, &got); err != nil {
					t.Fatal(err)
				}
				if want := float64(2 * (40*i + 6)); got != want {
					t.Errorf("parent %d = %v, want %v", i, got, want)
				}
			}
			// Waiting parents seceded; no worker was added for them.
			waitForWorkers(t, c, 2)
		})
	}
}

func TestRecursiveNesting(t *testing.T) {
	c := twoByOne(t, false)
	ctx := testContext(t)
	f, err := c.Submit(ctx, jsonTask("go.tree", "4")) // 15 waiting at once
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	if err := f.Decode(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != 16 {
		t.Errorf("go.tree(4) = %v, want 16", got)
	}
}

func TestNestingSixLevelsDeep(t *testing.T) {
	// 63 parents wait at once at the bottom, on 2 threads.
	c := twoByOne(t, false)
	ctx, cancel := context.WithTimeout(testContext(t), 30*time.Second)
	defer cancel()
	start := time.Now()
	f, err := c.Submit(ctx, jsonTask("go.tree", "6"))
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	if err := f.Decode(ctx, &got); err != nil {
		t.Fatalf("go.tree(6) on 2 x 1 threads after %v: %v", time.Since(start), err)
	}
	if got != 64 {
		t.Errorf("go.tree(6) = %v, want 64", got)
	}
}

func TestCancellingAParentCancelsItsChildren(t *testing.T) {
	c := twoByOne(t, false)
	ctx := testContext(t)
	p, err := c.Submit(ctx, jsonTask("go.nblock", "0"))
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	tgtest.Eventually(t, 10*time.Second, func() error {
		if kids, err = c.Children(ctx, p.Key()); err != nil {
			return err
		}
		if len(kids) != 2 {
			return fmt.Errorf("%d children so far", len(kids))
		}
		st, err := c.Status(ctx, append([]string{p.Key()}, kids...)...)
		if err != nil {
			return err
		}
		for _, k := range st.Keys {
			if k.State != taskgrid.StateProcessing {
				return fmt.Errorf("%s is %v", k.Key, k.State)
			}
			if k.Key != p.Key() && k.Parent != p.Key() {
				return fmt.Errorf("%s has parent %q, want %q", k.Key, k.Parent, p.Key())
			}
		}
		if !st.Keys[0].Seceded {
			return fmt.Errorf("the waiting parent is not seceded")
		}
		return nil
	})
	n, err := c.Cancel(ctx, p.Key())
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("Cancel(parent) = %d, want 3 (the parent and its 2 children)", n)
	}
	st, err := c.Status(ctx, append([]string{p.Key()}, kids...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range st.Keys {
		// The parent is this client's; its children only the parent's
		// (cancelled) task held, so the scheduler may already have
		// forgotten them: released is as good as cancelled for them.
		if k.State != taskgrid.StateCancelled &&
			(k.Key == p.Key() || k.State != taskgrid.StateReleased) {
			t.Errorf("%s is %v after cancelling its parent, want cancelled", k.Key, k.State)
		}
	}
	// The workers go on: their slots are free again.
	f, err := c.Submit(ctx, jsonTask("go.tree", "2"))
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	if err := f.Decode(ctx, &got); err != nil || got != 4 {
		t.Fatalf("go.tree(2) after the cancel = %v, %v", got, err)
	}
}

func TestClientFromContextOutsideATask(t *testing.T) {
	for name, ctx := range map[string]context.Context{
		"Background": context.Background(),
		"WithCancel": testContext(t),
	} {
		c, err := taskgrid.ClientFromContext(ctx)
		if c != nil || err == nil {
			t.Fatalf("%s: ClientFromContext = %v, %v; want an error", name, c, err)
		}
		if !errors.Is(err, taskgrid.ErrNotInTask) {
			t.Errorf("%s: error %q does not wrap ErrNotInTask", name, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "ClientFromContext") || !strings.Contains(msg, "task") {
			t.Errorf("%s: error %q does not name the call and what it needs", name, msg)
		}
	}
}

func TestRunawayRecursionFailsAtTheDepthLimit(t *testing.T) {
	c := twoByOne(t, false, "--max-nesting-depth", "5")
	ctx, cancel := context.WithTimeout(testContext(t), 30*time.Second)
	defer cancel()
	start := time.Now()
	top := jsonTask("go.recurse", "0")
	top.Key = "grec-0" // depth 0
	f, err := c.Submit(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	err = f.Decode(ctx, &v)
	if !errors.Is(err, taskgrid.ErrNestingTooDeep) {
		t.Fatalf("runaway recursion after %v: %v; want ErrNestingTooDeep", time.Since(start), err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v to fail", d)
	}
	// The task submitted at depth 6 never ran; the error names it, its
	// depth, its parent and the limit, and each parent passed it up.
	var te *taskgrid.TaskError
	if !errors.As(err, &te) {
		t.Fatalf("%v is not a *TaskError", err)
	}
	for _, want := range []string{"'grec-6'", "6 levels deep", "'grec-5'", "limit of 5"} {
		if !strings.Contains(te.Message, want) {
			t.Errorf("message %q lacks %q", te.Message, want)
		}
	}
	// (The nested tasks are released with the tasks that held them.)
	st, err := c.Status(ctx, "grec-0")
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Keys[0].State; s != taskgrid.StateErred {
		t.Errorf("grec-0 is %v, want erred", s)
	}
	// The cluster goes on within the limit.
	g, err := c.Submit(ctx, jsonTask("go.tree", "3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Decode(ctx, &v); err != nil || v != 8 {
		t.Fatalf("go.tree(3) after = %v, %v", v, err)
	}
}
