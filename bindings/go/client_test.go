// SPDX-License-Identifier: Apache-2.0

// client_test.go: the client against a real C scheduler and C workers:
// submission (single, batched, split), gathering, errors across the wire,
// same-key dedup, Cancel, Release, Annotate, Scale and Status.

package taskgrid_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

func TestDialRefusesBadAddressesAndOptions(t *testing.T) {
	tests := []struct {
		name    string
		address string
		opts    []taskgrid.Option
		want    string
	}{
		{"unknown scheme", "http://127.0.0.1:1", nil, "scheme must be tcp:// or tls://"},
		{"no port", "tcp://127.0.0.1", nil, "is not tcp://HOST:PORT"},
		{"tls without security", "tls://127.0.0.1:1", nil, "needs security options"},
		{"security on plaintext", "tcp://127.0.0.1:1", []taskgrid.Option{taskgrid.WithSecurity(&taskgrid.Security{CAFile: "ca.pem"})}, "plaintext"},
		{"missing CA", "tls://127.0.0.1:1", []taskgrid.Option{taskgrid.WithSecurity(&taskgrid.Security{})}, "CA is required"},
		{"unreadable CA", "tls://127.0.0.1:1", []taskgrid.Option{taskgrid.WithSecurity(&taskgrid.Security{CAFile: "/nonexistent/ca.pem"})}, "cannot read the CA"},
		{"CA not PEM", "tls://127.0.0.1:1", []taskgrid.Option{taskgrid.WithSecurity(&taskgrid.Security{CA: []byte("hello")})}, "not PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := taskgrid.Dial(testContext(t), tt.address, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Dial(%q) = %v, want an error containing %q", tt.address, err, tt.want)
			}
		})
	}
}

func TestDialUnreachableHonoursContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "tcp://" + l.Addr().String()
	l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = taskgrid.Dial(ctx, addr)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, want a wrapped context.DeadlineExceeded", err)
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Dial = %v (code %v), want the last connection error (Unavailable, connection refused)", err, status.Code(err))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Dial took %v with a 300 ms context", d)
	}
}

func TestSubmitAndResultOnCWorkers(t *testing.T) {
	_, c := cCluster(t, 1, 2)
	tests := []struct {
		name      string
		task      taskgrid.Task
		want      string
		wantCodec string
	}{
		{"inc", jsonTask("tg.inc", "41"), "42", "json"},
		{"add spreads an array", jsonTask("tg.add", "[1, 2, 3]"), "6", "json"},
		{"echo", jsonTask("tg.echo", `"hello"`), `"hello"`, "json"},
		{"noop", taskgrid.Task{Func: "tg.noop"}, "", "raw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			f, err := c.Submit(ctx, tt.task)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(f.Key(), tt.task.Func+"-") {
				t.Errorf("generated key %q does not start with %q", f.Key(), tt.task.Func+"-")
			}
			got, err := f.Result(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(got)) != tt.want || f.Codec() != tt.wantCodec {
				t.Errorf("result = %q (codec %q), want %q (codec %q)", got, f.Codec(), tt.want, tt.wantCodec)
			}
			if f.State() != taskgrid.StateMemory {
				t.Errorf("state = %v, want memory", f.State())
			}
		})
	}
}

func TestGraphInOneCallWithDependenciesInAnyOrder(t *testing.T) {
	_, c := cCluster(t, 2, 1)
	ctx := testContext(t)
	// The dependent comes first in the slice: the scheduler validates the
	// batch as a whole.
	tasks := []taskgrid.Task{
		{Key: "total", Func: "tg.sum", Deps: []string{"a", "b", "c"}},
		{Key: "a", Func: "tg.inc", Input: []byte("1"), Codec: "json"},
		{Key: "b", Func: "tg.inc", Input: []byte("2"), Codec: "json", Deps: nil},
		{Key: "c", Func: "tg.dec", Input: []byte("10"), Codec: "json"},
	}
	fs, err := c.SubmitMany(ctx, tasks)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Gather(ctx, fs...); err != nil {
		t.Fatal(err)
	}
	var total float64
	if err := fs[0].Decode(ctx, &total); err != nil {
		t.Fatal(err)
	}
	if total != 2+3+9 {
		t.Errorf("total = %v, want 14", total)
	}
}

func TestLargeGraphIsSplitInDependencyOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("large graph")
	}
	_, c := cCluster(t, 2, 2)
	ctx := testContext(t)
	// 25,000 tasks need three Submit messages; every dependent is listed
	// before its dependency, so a naive split would name unknown keys.
	const n = 25000
	tasks := make([]taskgrid.Task, n)
	for i := range n / 2 {
		dep := fmt.Sprintf("leaf-%d", i)
		tasks[i] = taskgrid.Task{Key: fmt.Sprintf("user-%d", i), Func: "tg.noop", Deps: []string{dep}}
		tasks[n/2+i] = taskgrid.Task{Key: dep, Func: "tg.noop"}
	}
	fs, err := c.SubmitMany(ctx, tasks)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Gather(ctx, fs...); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		if f.State() != taskgrid.StateMemory {
			t.Fatalf("task %d (%s) is %v", i, f.Key(), f.State())
		}
	}
}

func TestTaskErrorsCrossTheWire(t *testing.T) {
	_, c := cCluster(t, 1, 2)
	ctx := testContext(t)
	fs, err := c.SubmitMany(ctx, []taskgrid.Task{
		{Key: "bad", Func: "tg.fail", Input: []byte(`"boom"`), Codec: "json"},
		{Key: "after", Func: "tg.inc", Deps: []string{"bad"}},
		{Key: "fine", Func: "tg.inc", Input: []byte("1"), Codec: "json"},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Gather(ctx, fs[2], fs[0], fs[1])
	var te *taskgrid.TaskError
	if !errors.As(err, &te) || te.Key != "bad" {
		t.Fatalf("Gather = %v, want the TaskError of %q (the first failed future in argument order)", err, "bad")
	}
	tests := []struct {
		f          *taskgrid.Future
		wantOrigin string
	}{
		{fs[0], ""},
		{fs[1], "bad"},
	}
	for _, tt := range tests {
		_, err := tt.f.Result(ctx)
		if !errors.As(err, &te) {
			t.Fatalf("%s: Result error %v is not a *TaskError", tt.f.Key(), err)
		}
		if te.Type != "tg.Fail" || !strings.Contains(te.Message, "boom") || te.OriginKey != tt.wantOrigin || te.State != taskgrid.StateErred {
			t.Errorf("%s: got %+v, want type tg.Fail, message with boom, origin %q", tt.f.Key(), te, tt.wantOrigin)
		}
	}
	if got, err := fs[2].Result(ctx); err != nil || string(got) != "2" {
		t.Errorf("fine = %q, %v", got, err)
	}
}

func TestSchedulerRefusalsKeepTheirStatus(t *testing.T) {
	_, c := cCluster(t, 1, 1)
	ctx := testContext(t)
	tests := []struct {
		name  string
		tasks []taskgrid.Task
		code  codes.Code
		want  string
	}{
		{"unknown dependency", []taskgrid.Task{{Key: "x", Func: "tg.inc", Deps: []string{"no-such-key"}}}, codes.InvalidArgument, "no-such-key"},
		{"cycle", []taskgrid.Task{{Key: "p", Func: "tg.inc", Deps: []string{"q"}}, {Key: "q", Func: "tg.inc", Deps: []string{"p"}}}, codes.InvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.SubmitMany(ctx, tt.tasks)
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("SubmitMany = %v (code %v), want code %v naming %q", err, status.Code(err), tt.code, tt.want)
			}
		})
	}
	// Client-side checks need no round trip.
	if _, err := c.Submit(ctx, taskgrid.Task{Input: []byte("1")}); err == nil || !strings.Contains(err.Error(), "Func is required") {
		t.Errorf("Submit without Func = %v", err)
	}
	if _, err := c.Submit(ctx, taskgrid.Task{Key: strings.Repeat("k", taskgrid.MaxKeyLen+1), Func: "tg.noop"}); err == nil {
		t.Errorf("Submit with an oversized key succeeded")
	}
}

func TestSameKeyIsOneTask(t *testing.T) {
	_, c := cCluster(t, 1, 1)
	ctx := testContext(t)
	f1, err := c.Submit(ctx, taskgrid.Task{Key: "once", Func: "tg.inc", Input: []byte("1"), Codec: "json"})
	if err != nil {
		t.Fatal(err)
	}
	// Different input, same key: still the first task.
	f2, err := c.Submit(ctx, taskgrid.Task{Key: "once", Func: "tg.inc", Input: []byte("100"), Codec: "json"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*taskgrid.Future{f1, f2} {
		if got, err := f.Result(ctx); err != nil || string(got) != "2" {
			t.Errorf("Result = %q, %v; want 2", got, err)
		}
	}
}

func TestGatherHonoursContextAndUnknownKeys(t *testing.T) {
	_, c := cCluster(t, 1, 1)
	ctx := testContext(t)
	slow, err := c.Submit(ctx, jsonTask("tg.sleep", "5"))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err = c.Gather(short, slow)
	if !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Gather = %v, want DeadlineExceeded (both errors.Is and status.Code)", err)
	}
	if slow.State() != taskgrid.StatePending {
		t.Errorf("state after a timed-out gather = %v, want pending", slow.State())
	}
	if _, err := c.Cancel(ctx, slow.Key()); err != nil {
		t.Fatal(err)
	}

	_, err = c.Future("never-submitted").Result(ctx)
	var te *taskgrid.TaskError
	if !errors.Is(err, taskgrid.ErrUnknownKey) || !errors.As(err, &te) || te.Type != "tg.UnknownKey" {
		t.Fatalf("Result of an unknown key = %v, want ErrUnknownKey with type tg.UnknownKey", err)
	}
}

func TestCancelReachesDependents(t *testing.T) {
	_, c := cCluster(t, 1, 1)
	ctx := testContext(t)
	fs, err := c.SubmitMany(ctx, []taskgrid.Task{
		{Key: "slow", Func: "tg.sleep", Input: []byte("30"), Codec: "json"},
		{Key: "next", Func: "tg.inc", Deps: []string{"slow"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Cancel(ctx, "slow")
	if err != nil || n != 2 {
		t.Fatalf("Cancel = %d, %v; want 2 (the task and its dependent)", n, err)
	}
	for _, f := range fs {
		if _, err := f.Result(ctx); !errors.Is(err, taskgrid.ErrCancelled) {
			t.Errorf("%s: Result = %v, want ErrCancelled", f.Key(), err)
		}
		if f.State() != taskgrid.StateCancelled {
			t.Errorf("%s: state %v", f.Key(), f.State())
		}
	}
	// The worker got the cancel: it takes new work at once.
	f, err := c.Submit(ctx, jsonTask("tg.inc", "1"))
	if err != nil {
		t.Fatal(err)
	}
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := f.Result(quick); err != nil {
		t.Fatalf("the worker did not drop the cancelled sleep: %v", err)
	}
}

func TestReleaseAndCloseForgetResults(t *testing.T) {
	addr, c := cCluster(t, 1, 1)
	ctx := testContext(t)
	f, err := c.Submit(ctx, jsonTask("tg.inc", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Result(ctx); err != nil {
		t.Fatal(err)
	}
	// Another client's Release does not touch this client's hold.
	other := dial(t, addr)
	if n, err := other.Release(ctx, f.Key()); err != nil || n != 0 {
		t.Fatalf("Release by a client without a hold = %d, %v; want 0", n, err)
	}
	if n, err := c.Release(ctx, f.Key()); err != nil || n != 1 {
		t.Fatalf("Release = %d, %v; want 1 task forgotten", n, err)
	}
	if got, err := f.Result(ctx); err != nil || string(got) != "2" {
		t.Errorf("a released future keeps its result: %q, %v", got, err)
	}
	if _, err := other.Future(f.Key()).Result(ctx); !errors.Is(err, taskgrid.ErrUnknownKey) {
		t.Errorf("released key: %v, want ErrUnknownKey", err)
	}

	// Close releases what is still held.
	c2, err := taskgrid.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := c2.SubmitMany(ctx, []taskgrid.Task{jsonTask("tg.inc", "1"), jsonTask("tg.inc", "2")})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Gather(ctx, fs...); err != nil {
		t.Fatal(err)
	}
	if err := c2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Submit(ctx, jsonTask("tg.inc", "1")); !errors.Is(err, taskgrid.ErrClosed) {
		t.Errorf("Submit after Close = %v, want ErrClosed", err)
	}
	tgtest.Eventually(t, 5*time.Second, func() error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if st.Memory != 0 {
			return fmt.Errorf("%d results still in memory after Release and Close", st.Memory)
		}
		return nil
	})
}

func TestAnnotateChangesOnlyTasksNotStarted(t *testing.T) {
	_, c := cCluster(t, 1, 1)
	ctx := testContext(t)
	gate, err := c.Submit(ctx, jsonTask("tg.sleep", "0.5"))
	if err != nil {
		t.Fatal(err)
	}
	var tasks []taskgrid.Task
	for i := range 3 {
		tasks = append(tasks, taskgrid.Task{Key: fmt.Sprintf("later-%d", i), Func: "tg.inc", Deps: []string{gate.Key()}})
	}
	later, err := c.SubmitMany(ctx, tasks)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{later[0].Key(), later[1].Key(), later[2].Key()}
	n, err := c.Annotate(ctx, taskgrid.Annotation{Priority: new(int32(10)), Retries: new(uint32(2))}, keys...)
	if err != nil || n != 3 {
		t.Fatalf("Annotate = %d, %v; want 3", n, err)
	}
	if err := c.Gather(ctx, later...); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Annotate(ctx, taskgrid.Annotation{Priority: new(int32(1))}, keys...); err != nil || n != 0 {
		t.Errorf("Annotate of finished tasks = %d, %v; want 0", n, err)
	}
}

func TestScaleAndStatus(t *testing.T) {
	b := tgtest.Binaries(t)
	addr := tgtest.Scheduler(t, "--worker-bin", b.Worker, "--nthreads", "1")
	c := dial(t, addr)
	ctx := testContext(t)
	info, err := c.Scale(ctx, 2)
	if err != nil || info.Target != 2 {
		t.Fatalf("Scale(2) = %+v, %v", info, err)
	}
	waitForWorkers(t, c, 2)
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version == "" || len(st.Workers) != 2 || st.Workers[0].NThreads != 1 {
		t.Errorf("Status = %+v", st)
	}
	l := st.Launcher
	if l == nil || l.Kind != "local" || l.Target != 2 || l.Active != 2 || l.Starting != 0 ||
		len(l.Units) != 2 || l.Units[0].State != "running" || l.Units[0].Connected != 1 ||
		!strings.HasPrefix(l.Units[0].Where, "pid ") || l.Failures != 0 {
		t.Errorf("Status.Launcher = %+v", l)
	}
	if _, err := c.Scale(ctx, 0); err != nil {
		t.Fatal(err)
	}
	waitForWorkers(t, c, 0)

	if _, err := c.Scale(ctx, -1); err == nil {
		t.Error("Scale(-1) succeeded")
	}
	noLauncher := dial(t, tgtest.Scheduler(t, "--launcher", "none"))
	if _, err := noLauncher.Scale(ctx, 1); err == nil || !strings.Contains(err.Error(), "launcher") {
		t.Errorf("Scale without a launcher = %v, want the scheduler's explanation", err)
	}
	if st, err := noLauncher.Status(ctx); err != nil || st.Launcher != nil {
		t.Errorf("Status without a launcher = %+v, %v; want no Launcher", st, err)
	}
}

func TestStatusExplainsWaitingKeys(t *testing.T) {
	_, c := cCluster(t, 1, 1)
	ctx := testContext(t)
	f, err := c.Submit(ctx, taskgrid.Task{Func: "nobody.provides"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, f.Key())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 1 || st.Keys[0].State != taskgrid.StateReady || !strings.Contains(st.Keys[0].Reason, "nobody.provides") {
		t.Errorf("Status keys = %+v, want ready with a reason naming the function", st.Keys)
	}
	if err := f.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
}
