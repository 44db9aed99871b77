// SPDX-License-Identifier: Apache-2.0

// watch_internal_test.go: Watch, Progress and SetLogLevel against a fake
// scheduler (grpc-go, in the test): typed updates, ordering, reconnection,
// cancellation, errors, Progress ending when every key is final and
// splitting keys over several streams.

package taskgrid

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

type fakeScheduler struct {
	pb.UnimplementedSchedulerServer
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	states   map[string]pb.TaskState
	requests []*pb.WatchRequest
	ended    int
	level    string
	// watch, if set, answers Watch instead of following states.
	watch func(*pb.WatchRequest, grpc.ServerStreamingServer[pb.WatchUpdate]) error
}

func newFake(t *testing.T) (*fakeScheduler, *Client) {
	t.Helper()
	f := &fakeScheduler{changed: make(chan struct{}), states: map[string]pb.TaskState{}, level: "info"}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterSchedulerServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, "tcp://"+lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return f, c
}

func (f *fakeScheduler) set(state pb.TaskState, keys ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		f.states[k] = state
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitFor waits (bounded) until cond holds under the lock.
func (f *fakeScheduler) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		ok, ch := cond(), f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("fake scheduler: %s: not in time", what)
		}
	}
}

func (f *fakeScheduler) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{}, nil
}

func (f *fakeScheduler) SetLogLevel(_ context.Context, r *pb.SetLogLevelRequest) (*pb.SetLogLevelResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := f.level
	if r.GetLevel() != "" {
		f.level = r.GetLevel()
	}
	return &pb.SetLogLevelResponse{Previous: prev, Level: f.level}, nil
}

func (f *fakeScheduler) Watch(r *pb.WatchRequest, s grpc.ServerStreamingServer[pb.WatchUpdate]) error {
	f.mu.Lock()
	f.requests = append(f.requests, r)
	f.set0()
	watch := f.watch
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.ended++
		f.set0()
		f.mu.Unlock()
	}()
	if watch != nil {
		return watch(r, s)
	}
	var last *pb.TaskCounts
	for {
		f.mu.Lock()
		c := &pb.TaskCounts{}
		for _, k := range r.GetKeys() {
			switch st, ok := f.states[k]; {
			case !ok || st == pb.TaskState_TASK_STATE_RELEASED:
				c.Released++
			case st == pb.TaskState_TASK_STATE_WAITING:
				c.Waiting++
			case st == pb.TaskState_TASK_STATE_PROCESSING:
				c.Processing++
			case st == pb.TaskState_TASK_STATE_MEMORY:
				c.Memory++
			case st == pb.TaskState_TASK_STATE_ERRED:
				c.Erred++
			}
		}
		ch := f.changed
		f.mu.Unlock()
		if last == nil || c.String() != last.String() {
			if err := s.Send(&pb.WatchUpdate{KeysCounts: c}); err != nil {
				return err
			}
			last = c
		}
		select {
		case <-ch:
		case <-s.Context().Done():
			return nil
		}
	}
}

// set0 signals a change; under f.mu.
func (f *fakeScheduler) set0() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func waitDone(s grpc.ServerStreamingServer[pb.WatchUpdate]) error {
	<-s.Context().Done()
	return nil
}

func TestWatchTypedUpdates(t *testing.T) {
	f, c := newFake(t)
	f.watch = func(_ *pb.WatchRequest, s grpc.ServerStreamingServer[pb.WatchUpdate]) error {
		_ = s.Send(&pb.WatchUpdate{
			TimeUs: 1_700_000_000_500_000,
			Totals: &pb.TaskCounts{Waiting: 1, Processing: 2, Memory: 3, Released: 4},
			Tasks: []*pb.TaskEvent{{Key: "a", Previous: pb.TaskState_TASK_STATE_PROCESSING,
				State: pb.TaskState_TASK_STATE_MEMORY, Function: "tg.inc", Worker: "w1",
				Attempt: 1, RunUs: 1500, Nbytes: 12}},
			Functions: []*pb.FunctionCounts{{Function: "tg.inc", Counts: &pb.TaskCounts{Memory: 3}}},
			Workers: []*pb.WorkerEvent{{Kind: pb.WorkerEvent_KIND_JOINED,
				Worker: &pb.WorkerInfo{Name: "w1", Nthreads: 2}}, {Kind: 9}},
			Nworkers: 1, TargetWorkers: 3,
		})
		return nil // the scheduler ends the stream: io.EOF next
	}
	w, err := c.Watch(context.Background(), WatchOptions{Keys: []string{"k", "k", "j"},
		TaskEvents: true, Functions: true, Workers: true, Interval: 250 * time.Millisecond, MaxEvents: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	u, err := w.Next()
	if err != nil {
		t.Fatal(err)
	}
	if u.Time.UnixMicro() != 1_700_000_000_500_000 || u.Totals != (TaskCounts{Waiting: 1, Processing: 2, Memory: 3, Released: 4}) {
		t.Errorf("time/totals: %v %+v", u.Time, u.Totals)
	}
	if u.Totals.Active() != 3 || u.Totals.Done() != 7 || u.Totals.Total() != 10 {
		t.Errorf("Active/Done/Total: %d %d %d", u.Totals.Active(), u.Totals.Done(), u.Totals.Total())
	}
	e := u.Tasks[0]
	if e.Key != "a" || e.Previous != StateProcessing || e.State != StateMemory || e.Worker != "w1" ||
		e.RunTime != 1500*time.Microsecond || e.NBytes != 12 {
		t.Errorf("event: %+v", e)
	}
	if u.Functions["tg.inc"].Memory != 3 || u.NWorkers != 1 || u.TargetWorkers != 3 {
		t.Errorf("functions/workers: %+v", u)
	}
	if u.Workers[0].Kind != WorkerJoined || u.Workers[0].Worker.Name != "w1" || u.Workers[1].Kind.String() != "WorkerEventKind(9)" {
		t.Errorf("workers: %+v", u.Workers)
	}
	if _, err := w.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the scheduler ended it: %v, want io.EOF", err)
	}
	r := f.requests[0]
	if strings.Join(r.GetKeys(), ",") != "k,j" || !r.GetTaskEvents() || !r.GetFunctions() || !r.GetWorkers() ||
		r.GetIntervalMs() != 250 || r.GetMaxEvents() != 5 {
		t.Errorf("request: %v", r)
	}
}

func TestWatchRefusesBadOptions(t *testing.T) {
	_, c := newFake(t)
	keys := make([]string, MaxWatchKeys+1)
	for i := range keys {
		keys[i] = string(rune('a'+i%26)) + strings.Repeat("x", i/26)
	}
	if _, err := c.Watch(context.Background(), WatchOptions{Keys: keys}); err == nil || !strings.Contains(err.Error(), "at most 65535 keys") {
		t.Errorf("too many keys: %v", err)
	}
	if _, err := c.Watch(context.Background(), WatchOptions{Interval: -time.Second}); err == nil {
		t.Error("negative interval accepted")
	}
}

func TestWatchReconnectsAfterUnavailable(t *testing.T) {
	f, c := newFake(t)
	calls := 0
	f.watch = func(_ *pb.WatchRequest, s grpc.ServerStreamingServer[pb.WatchUpdate]) error {
		f.mu.Lock()
		calls++
		n := calls
		f.mu.Unlock()
		_ = s.Send(&pb.WatchUpdate{Totals: &pb.TaskCounts{Processing: uint64(n)}})
		if n == 1 {
			return status.Error(codes.Unavailable, "restarting")
		}
		return waitDone(s)
	}
	w, err := c.Watch(context.Background(), WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	u1, err1 := w.Next()
	u2, err2 := w.Next()
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if u1.Totals.Processing != 1 || u1.Reconnected || u2.Totals.Processing != 2 || !u2.Reconnected {
		t.Errorf("updates: %+v %+v", u1, u2)
	}
}

func TestWatchErrorsKeepTheirCode(t *testing.T) {
	for _, code := range []codes.Code{codes.Unimplemented, codes.PermissionDenied, codes.Unavailable} {
		f, c := newFake(t)
		f.watch = func(*pb.WatchRequest, grpc.ServerStreamingServer[pb.WatchUpdate]) error {
			return status.Error(code, "no")
		}
		w, err := c.Watch(context.Background(), WatchOptions{Reconnect: -1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.Next()
		if status.Code(err) != code || !strings.HasPrefix(err.Error(), "taskgrid: watch: ") {
			t.Errorf("%v: got %v", code, err)
		}
		w.Close()
	}
}

func TestWatchCancellationClosesTheStream(t *testing.T) {
	f, c := newFake(t)
	f.set(pb.TaskState_TASK_STATE_PROCESSING, "k")
	ctx, cancel := context.WithCancel(context.Background())
	w, err := c.Watch(ctx, WatchOptions{Keys: []string{"k"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Next(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := w.Next(); done <- err }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Next after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return after cancel")
	}
	f.waitFor(t, "stream ended", func() bool { return f.ended == 1 })
}

func TestProgressEndsWhenAllFinalAndSplits(t *testing.T) {
	f, c := newFake(t)
	old := progressStreamKeys
	progressStreamKeys = 4
	t.Cleanup(func() { progressStreamKeys = old })
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	f.set(pb.TaskState_TASK_STATE_WAITING, keys...)
	var mu sync.Mutex
	var seen []ProgressInfo
	done := make(chan error, 1)
	go func() {
		done <- c.ProgressKeys(context.Background(), keys, func(p ProgressInfo) {
			mu.Lock()
			seen = append(seen, p)
			mu.Unlock()
		})
	}()
	f.waitFor(t, "3 streams", func() bool { return len(f.requests) == 3 })
	f.set(pb.TaskState_TASK_STATE_MEMORY, keys[:8]...)
	f.waitFor(t, "8 done seen", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1].Done == 8
	})
	select {
	case err := <-done:
		t.Fatalf("returned before all were final: %v", err)
	default:
	}
	f.set(pb.TaskState_TASK_STATE_ERRED, keys[8:]...)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Progress did not return")
	}
	last := seen[len(seen)-1]
	if last.Done != 10 || last.Total != 10 || last.Counts.Erred != 2 || last.Counts.Memory != 8 {
		t.Errorf("last: %+v", last)
	}
	sizes := []int{len(f.requests[0].GetKeys()), len(f.requests[1].GetKeys()), len(f.requests[2].GetKeys())}
	if sizes[0]+sizes[1]+sizes[2] != 10 || max(sizes[0], sizes[1], sizes[2]) != 4 {
		t.Errorf("stream sizes %v", sizes)
	}
	f.waitFor(t, "streams closed", func() bool { return f.ended == 3 })
}

func TestProgressRefusesBadCountsAndEarlyEnds(t *testing.T) {
	f, c := newFake(t)
	f.watch = func(_ *pb.WatchRequest, s grpc.ServerStreamingServer[pb.WatchUpdate]) error {
		_ = s.Send(&pb.WatchUpdate{KeysCounts: &pb.TaskCounts{Memory: 5}})
		return waitDone(s)
	}
	err := c.ProgressKeys(context.Background(), []string{"a", "b"}, nil)
	if err == nil || !strings.Contains(err.Error(), "counted 5 keys where 2 were asked for") {
		t.Errorf("bad counts: %v", err)
	}
	f.watch = func(_ *pb.WatchRequest, s grpc.ServerStreamingServer[pb.WatchUpdate]) error {
		return s.Send(&pb.WatchUpdate{KeysCounts: &pb.TaskCounts{Processing: 2}})
	}
	err = c.ProgressKeys(context.Background(), []string{"a", "b"}, nil)
	if err == nil || !strings.Contains(err.Error(), "ended the watch before every key was final") {
		t.Errorf("early end: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	f.watch = func(_ *pb.WatchRequest, s grpc.ServerStreamingServer[pb.WatchUpdate]) error {
		_ = s.Send(&pb.WatchUpdate{KeysCounts: &pb.TaskCounts{Processing: 1}})
		return waitDone(s)
	}
	if err := c.ProgressKeys(ctx, []string{"a"}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ctx deadline: %v", err)
	}
}

func TestSetLogLevelFake(t *testing.T) {
	f, c := newFake(t)
	ctx := context.Background()
	if prev, err := c.SetLogLevel(ctx, "debug"); err != nil || prev != "info" || f.level != "debug" {
		t.Errorf("set: %q %v (now %q)", prev, err, f.level)
	}
	if prev, err := c.SetLogLevel(ctx, ""); err != nil || prev != "debug" {
		t.Errorf("read: %q %v", prev, err)
	}
	if _, err := c.SetLogLevel(ctx, "loud"); err == nil || !strings.Contains(err.Error(), `unknown level "loud"`) {
		t.Errorf("bad level: %v", err)
	}
}
