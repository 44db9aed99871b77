// SPDX-License-Identifier: Apache-2.0

// worker_test.go: the Go worker against a real C scheduler: results and
// errors of Go functions, retries, cancellation through the context,
// resources, a clean stop that hands queued work back, reconnection after a
// scheduler restart, and nested work through the worker-side client.

package taskgrid_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

// double is go.double: 2*x in the JSON convention of the C built-ins.
var double = taskgrid.JSONFunc(func(_ context.Context, args []json.RawMessage) (any, error) {
	var x float64
	if len(args) != 1 || json.Unmarshal(args[0], &x) != nil {
		return nil, &taskgrid.TaskError{Type: "TypeError", Message: "go.double takes one number"}
	}
	return 2 * x, nil
})

func TestWorkerRegisterRefusesBadNames(t *testing.T) {
	noop := func(context.Context, []byte, [][]byte) ([]byte, error) { return nil, nil }
	tests := []struct {
		name string
		fn   taskgrid.Func
		ok   bool
	}{
		{"go.ok", noop, true},
		{"nodot", noop, false},
		{".name", noop, false},
		{"ns.", noop, false},
		{"go.has space", noop, false},
		{"go.nil", nil, false},
		{"go.ok", noop, false}, // twice
	}
	w := taskgrid.NewWorker("tcp://127.0.0.1:1")
	for _, tt := range tests {
		if err := w.Register(tt.name, tt.fn); (err == nil) != tt.ok {
			t.Errorf("Register(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if err := taskgrid.NewWorker("tcp://127.0.0.1:1").Run(context.Background()); err == nil {
		t.Error("Run without functions succeeded")
	}
}

func TestGoWorkerRunsFunctions(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	w, _ := goWorker(t, addr, map[string]taskgrid.Func{
		"go.double": double,
		"go.upper": func(ctx context.Context, in []byte, deps [][]byte) ([]byte, error) {
			return []byte(strings.ToUpper(string(in))), nil
		},
		"go.info": func(ctx context.Context, in []byte, deps [][]byte) ([]byte, error) {
			info, ok := taskgrid.TaskInfoFromContext(ctx)
			if !ok {
				return nil, errors.New("no task info")
			}
			taskgrid.SetResultCodec(ctx, "json")
			return json.Marshal(info)
		},
	}, taskgrid.WithName("gw"), taskgrid.WithNThreads(2))
	waitForWorkers(t, c, 1)
	// The scheduler lists the worker before the worker reads its answer.
	tgtest.Eventually(t, 5*time.Second, func() error {
		if w.Name() != "gw" {
			return fmt.Errorf("registered name %q, want gw", w.Name())
		}
		return nil
	})
	ctx := testContext(t)
	fs, err := c.SubmitMany(ctx, []taskgrid.Task{
		{Key: "d", Func: "go.double", Input: []byte("21"), Codec: "json"},
		{Key: "u", Func: "go.upper", Input: []byte("shout")},
		{Key: "i", Func: "go.info", Input: []byte("7"), Codec: "json", Deps: []string{"d"}, Priority: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Gather(ctx, fs...); err != nil {
		t.Fatal(err)
	}
	if got, _ := fs[0].Result(ctx); string(got) != "42" || fs[0].Codec() != "json" {
		t.Errorf("go.double(21) = %q (%s)", got, fs[0].Codec())
	}
	if got, _ := fs[1].Result(ctx); string(got) != "SHOUT" || fs[1].Codec() != "raw" {
		t.Errorf("go.upper = %q (%s), want SHOUT (raw)", got, fs[1].Codec())
	}
	var info taskgrid.TaskInfo
	if err := fs[2].Decode(ctx, &info); err != nil {
		t.Fatal(err)
	}
	want := taskgrid.TaskInfo{Key: "i", Func: "go.info", Codec: "json", DepCodecs: []string{"json"}, Attempt: 1, Priority: 3, Worker: "gw"}
	if fmt.Sprint(info) != fmt.Sprint(want) {
		t.Errorf("TaskInfo = %+v, want %+v", info, want)
	}
}

func TestGoWorkerErrors(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	goWorker(t, addr, map[string]taskgrid.Func{
		"go.plain": func(context.Context, []byte, [][]byte) ([]byte, error) {
			return nil, fmt.Errorf("disk full: %w", errors.New("ENOSPC"))
		},
		"go.typed": func(context.Context, []byte, [][]byte) ([]byte, error) {
			return nil, &taskgrid.TaskError{Type: "ValueError", Message: "bad value", Traceback: "at go.typed"}
		},
		"go.wrapped": func(context.Context, []byte, [][]byte) ([]byte, error) {
			return nil, fmt.Errorf("context: %w", &taskgrid.TaskError{Type: "KeyError"})
		},
		"go.panic": func(context.Context, []byte, [][]byte) ([]byte, error) {
			var m map[string]int
			//lint:ignore SA5000 the test needs the runtime's nil-map panic, whose message it asserts
			m["x"] = 1 // panics
			return nil, nil
		},
		"go.double": double,
	})
	waitForWorkers(t, c, 1)
	tests := []struct {
		fn, input                    string
		wantType, wantMsg, wantTrace string
	}{
		{"go.plain", "", "go.Error", "disk full: ENOSPC", ""},
		{"go.typed", "", "ValueError", "bad value", "at go.typed"},
		{"go.wrapped", "", "KeyError", "context: ", ""},
		{"go.panic", "", "go.Panic", "assignment to entry in nil map", "goroutine"},
		{"go.double", "not json", "ValueError", "not valid JSON", ""},
	}
	for _, tt := range tests {
		t.Run(tt.fn, func(t *testing.T) {
			ctx := testContext(t)
			f, err := c.Submit(ctx, taskgrid.Task{Func: tt.fn, Input: []byte(tt.input), Codec: "json"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Result(ctx)
			var te *taskgrid.TaskError
			if !errors.As(err, &te) {
				t.Fatalf("Result = %v, want a *TaskError", err)
			}
			if te.Type != tt.wantType || !strings.Contains(te.Message, tt.wantMsg) || !strings.Contains(te.Traceback, tt.wantTrace) {
				t.Errorf("got type %q message %q traceback %.80q; want %q, %q, %q", te.Type, te.Message, te.Traceback, tt.wantType, tt.wantMsg, tt.wantTrace)
			}
		})
	}
}

func TestGoWorkerRetries(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	var calls atomic.Int32
	goWorker(t, addr, map[string]taskgrid.Func{
		"go.flaky": func(ctx context.Context, _ []byte, _ [][]byte) ([]byte, error) {
			calls.Add(1)
			info, _ := taskgrid.TaskInfoFromContext(ctx)
			if info.Attempt < 3 {
				return nil, fmt.Errorf("attempt %d fails", info.Attempt)
			}
			return []byte(fmt.Sprint(info.Attempt)), nil
		},
	})
	waitForWorkers(t, c, 1)
	ctx := testContext(t)
	ok, err := c.Submit(ctx, taskgrid.Task{Key: "retried", Func: "go.flaky", Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ok.Result(ctx); err != nil || string(got) != "3" {
		t.Fatalf("with 2 retries: %q, %v; want success on attempt 3", got, err)
	}
	calls.Store(0)
	bad, err := c.Submit(ctx, taskgrid.Task{Key: "not-retried", Func: "go.flaky", Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Result(ctx); err == nil || !strings.Contains(err.Error(), "attempt 2 fails") {
		t.Errorf("with 1 retry: %v, want the error of attempt 2", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
}

func TestGoWorkerCancellationReachesTheContext(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	started := make(chan struct{})
	stopped := make(chan error, 1)
	goWorker(t, addr, map[string]taskgrid.Func{
		"go.block": func(ctx context.Context, _ []byte, _ [][]byte) ([]byte, error) {
			close(started)
			<-ctx.Done()
			stopped <- ctx.Err()
			return nil, ctx.Err()
		},
		"go.double": double,
	}, taskgrid.WithNThreads(1))
	waitForWorkers(t, c, 1)
	ctx := testContext(t)
	f, err := c.Submit(ctx, taskgrid.Task{Func: "go.block"})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if err := f.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("task context ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the task's context was not cancelled")
	}
	if _, err := f.Result(ctx); !errors.Is(err, taskgrid.ErrCancelled) {
		t.Errorf("Result = %v, want ErrCancelled", err)
	}
	// The slot is free again.
	g, err := c.Submit(ctx, jsonTask("go.double", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := g.Result(ctx); err != nil || string(got) != "2" {
		t.Errorf("after the cancel: %q, %v", got, err)
	}
}

func TestGoWorkerResources(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	var running, peak atomic.Int32
	where := func(ctx context.Context, _ []byte, _ [][]byte) ([]byte, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		info, _ := taskgrid.TaskInfoFromContext(ctx)
		return []byte(info.Worker), nil
	}
	goWorker(t, addr, map[string]taskgrid.Func{"go.where": where},
		taskgrid.WithName("gpu-box"), taskgrid.WithNThreads(4), taskgrid.WithResources(map[string]float64{"GPU": 1}))
	goWorker(t, addr, map[string]taskgrid.Func{"go.where": where},
		taskgrid.WithName("cpu-box"), taskgrid.WithNThreads(4))
	waitForWorkers(t, c, 2)
	ctx := testContext(t)
	tasks := make([]taskgrid.Task, 6)
	for i := range tasks {
		tasks[i] = taskgrid.Task{Func: "go.where", Resources: map[string]float64{"GPU": 1}}
	}
	fs, err := c.SubmitMany(ctx, tasks)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Gather(ctx, fs...); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if got, _ := f.Result(ctx); string(got) != "gpu-box" {
			t.Errorf("a GPU task ran on %q", got)
		}
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("%d GPU tasks ran at once on a worker with GPU=1", p)
	}
}

func TestGoWorkerStopHandsQueuedWorkBack(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	release := make(chan struct{})
	var ranOnFirst atomic.Int32
	slowFirst := func(ctx context.Context, in []byte, _ [][]byte) ([]byte, error) {
		info, _ := taskgrid.TaskInfoFromContext(ctx)
		if info.Worker == "first" {
			ranOnFirst.Add(1)
			<-release
		}
		return []byte(info.Worker), nil
	}
	_, stopFirst := goWorker(t, addr, map[string]taskgrid.Func{"go.job": slowFirst},
		taskgrid.WithName("first"), taskgrid.WithNThreads(1))
	waitForWorkers(t, c, 1)
	ctx := testContext(t)
	tasks := make([]taskgrid.Task, 5)
	for i := range tasks {
		tasks[i] = taskgrid.Task{Func: "go.job", Input: []byte(fmt.Sprint(i))}
	}
	fs, err := c.SubmitMany(ctx, tasks)
	if err != nil {
		t.Fatal(err)
	}
	tgtest.Eventually(t, 5*time.Second, func() error {
		if ranOnFirst.Load() == 0 {
			return errors.New("no task started on the first worker")
		}
		return nil
	})
	// Stop the first worker while one task runs there: the running task
	// finishes within the grace period and its result arrives; queued
	// ones go back and run on the second worker.
	stopped := make(chan struct{})
	go func() { stopFirst(); close(stopped) }()
	time.Sleep(100 * time.Millisecond)
	goWorker(t, addr, map[string]taskgrid.Func{"go.job": slowFirst}, taskgrid.WithName("second"))
	close(release)
	<-stopped
	if err := c.Gather(ctx, fs...); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, f := range fs {
		got, _ := f.Result(ctx)
		count[string(got)]++
	}
	if count["first"] != int(ranOnFirst.Load()) || count["first"]+count["second"] != len(fs) || count["second"] == 0 {
		t.Errorf("results by worker %v (started on first: %d)", count, ranOnFirst.Load())
	}
}

func TestGoWorkerReconnectsAfterSchedulerRestart(t *testing.T) {
	// A fixed port, so that the restarted scheduler has the same address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	listen := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	first, _ := tgtest.SchedulerProcess(t, "--launcher", "none", "--listen", listen)
	goWorker(t, listen, map[string]taskgrid.Func{"go.double": double}, taskgrid.WithName("survivor"))
	c := dial(t, listen)
	waitForWorkers(t, c, 1)
	if err := first.Stop(5 * time.Second); err != nil {
		t.Logf("first scheduler: %v", err)
	}
	tgtest.SchedulerProcess(t, "--launcher", "none", "--listen", listen)
	c2 := dial(t, listen)
	waitForWorkers(t, c2, 1)
	ctx := testContext(t)
	f, err := c2.Submit(ctx, jsonTask("go.double", "4"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.Result(ctx); err != nil || string(got) != "8" {
		t.Errorf("after the restart: %q, %v", got, err)
	}
}

func TestNestedWorkThroughTheWorkerSideClient(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	tgtest.CWorker(t, addr, "--nthreads", "1", "--name", "c")
	// go.parent(n) submits n go.square tasks (on this worker) and a C
	// tg.sum of their results, and waits for the sum.
	parent := taskgrid.JSONFunc(func(ctx context.Context, args []json.RawMessage) (any, error) {
		var n int
		if err := json.Unmarshal(args[0], &n); err != nil {
			return nil, err
		}
		nc, err := taskgrid.ClientFromContext(ctx)
		if err != nil {
			return nil, err
		}
		var tasks []taskgrid.Task
		var keys []string
		for i := range n {
			tk := jsonTask("go.square", fmt.Sprint(i+1))
			tk.Key = taskgrid.NewKey("go.square")
			tasks = append(tasks, tk)
			keys = append(keys, tk.Key)
		}
		tasks = append(tasks, taskgrid.Task{Func: "tg.sum", Deps: keys})
		fs, err := nc.SubmitMany(ctx, tasks)
		if err != nil {
			return nil, err
		}
		var sum float64
		err = fs[n].Decode(ctx, &sum)
		return sum, err
	})
	square := taskgrid.JSONFunc(func(_ context.Context, args []json.RawMessage) (any, error) {
		var x float64
		err := json.Unmarshal(args[0], &x)
		return x * x, err
	})
	// One slot: unless the parent lends it while it waits, its children,
	// assigned to this worker, would queue behind it forever.
	goWorker(t, addr, map[string]taskgrid.Func{"go.parent": parent, "go.square": square},
		taskgrid.WithNThreads(1), taskgrid.WithName("g"))
	waitForWorkers(t, c, 2)
	ctx := testContext(t)
	f, err := c.Submit(ctx, jsonTask("go.parent", "4"))
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	if err := f.Decode(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != 1+4+9+16 {
		t.Errorf("go.parent(4) = %v, want 30", got)
	}
	// Nested results are released when their task returns: once this
	// client lets go of the parent, nothing stays in memory.
	if err := f.Release(ctx); err != nil {
		t.Fatal(err)
	}
	tgtest.Eventually(t, 5*time.Second, func() error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if st.Memory != 0 {
			return fmt.Errorf("%d results still held", st.Memory)
		}
		return nil
	})
	if _, err := taskgrid.ClientFromContext(ctx); err == nil {
		t.Error("ClientFromContext outside a task succeeded")
	}
}

// WithDeathTimeout: with no scheduler there, Run gives up after the
// timeout with ErrSchedulerGone; without it, Run keeps trying until its
// context ends and returns nil.
func TestWorkerDeathTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "tcp://" + l.Addr().String()
	l.Close() // nobody listens there now
	w := taskgrid.NewWorker(addr, taskgrid.WithDeathTimeout(300*time.Millisecond))
	if err := w.Register("go.double", double); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err = w.Run(ctx)
	if !errors.Is(err, taskgrid.ErrSchedulerGone) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Run = %v, want ErrSchedulerGone naming %s", err, addr)
	}
	if took := time.Since(start); took < 300*time.Millisecond || ctx.Err() != nil {
		t.Fatalf("Run gave up after %v (context: %v), want after the 300 ms timeout", took, ctx.Err())
	}

	patient := taskgrid.NewWorker(addr)
	if err := patient.Register("go.double", double); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), time.Second)
	defer cancelShort()
	if err := patient.Run(short); err != nil {
		t.Fatalf("Run without a death timeout = %v, want nil at its context's end", err)
	}
}
