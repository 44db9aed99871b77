// SPDX-License-Identifier: Apache-2.0

// memory_test.go: the Go worker's memory management on a real C
// scheduler: a worker with a small memory limit holds 5x its limit of
// results by spilling them (Status shows it), and the spilled results
// come back for a dependent on the same worker, one on another worker
// (Fetch) and a client's Gather (upload), byte for byte; freed, their
// files go, and the private spill directory goes with the worker; a
// worker over the pause fraction is given no task until results are
// freed; a result larger than the memory budget fails its task with
// tg.ResultTooLarge and the worker goes on; the limits parse as the C
// and Python workers' do.

package taskgrid_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// block is the content of go.block "i n": n bytes that differ per i.
func block(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*131 + j*7 + j>>10)
	}
	return b
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// memoryFuncs: go.block "i n" makes block(i, n); go.digest returns the
// digests of its dependencies, comma-separated (a small, inline result);
// go.calls counts its runs on this worker.
func memoryFuncs(calls *int) map[string]taskgrid.Func {
	return map[string]taskgrid.Func{
		"go.block": func(_ context.Context, in []byte, _ [][]byte) ([]byte, error) {
			var i, n int
			if _, err := fmt.Sscan(string(in), &i, &n); err != nil {
				return nil, err
			}
			return block(i, n), nil
		},
		"go.digest": func(_ context.Context, _ []byte, deps [][]byte) ([]byte, error) {
			ds := make([]string, len(deps))
			for i, d := range deps {
				ds[i] = digest(d)
			}
			return []byte(strings.Join(ds, ",")), nil
		},
		"go.calls": func(context.Context, []byte, [][]byte) ([]byte, error) {
			*calls++
			return []byte(strconv.Itoa(*calls)), nil
		},
	}
}

func workerInfo(t *testing.T, c *taskgrid.Client, name string) (taskgrid.WorkerInfo, error) {
	st, err := c.Status(testContext(t))
	if err != nil {
		return taskgrid.WorkerInfo{}, err
	}
	for _, w := range st.Workers {
		if w.Name == name {
			return w, nil
		}
	}
	return taskgrid.WorkerInfo{}, fmt.Errorf("no worker %s in Status", name)
}

// waitInfo waits until worker name's Status entry satisfies ok.
func waitInfo(t *testing.T, c *taskgrid.Client, name, what string, ok func(taskgrid.WorkerInfo) bool) taskgrid.WorkerInfo {
	t.Helper()
	var got taskgrid.WorkerInfo
	tgtest.Eventually(t, 10*time.Second, func() error {
		w, err := workerInfo(t, c, name)
		if err != nil {
			return err
		}
		if got = w; !ok(w) {
			return fmt.Errorf("worker %s: want %s; Status says %+v", name, what, w)
		}
		return nil
	})
	return got
}

func spillDirs(t *testing.T, tmp string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(tmp, "taskgrid-spill-*"))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func TestMemorySpillsFiveTimesItsLimit(t *testing.T) {
	const (
		limit = 4 * mib
		n     = 20 // blocks of 1 MiB: 5x the limit
	)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the private spill directory goes
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	var calls, peerCalls int
	m, stopM := goWorker(t, addr, memoryFuncs(&calls), taskgrid.WithName("m"), taskgrid.WithNThreads(2),
		taskgrid.WithMemoryLimit(limit))
	goWorker(t, addr, memoryFuncs(&peerCalls), taskgrid.WithName("peer"), taskgrid.WithNThreads(1))
	waitForWorkers(t, c, 2)
	ctx := testContext(t)

	var blocks []taskgrid.Task
	for i := range n {
		blocks = append(blocks, taskgrid.Task{Key: fmt.Sprintf("block-%d", i), Func: "go.block",
			Input: fmt.Appendf(nil, "%d %d", i, mib), Workers: []string{"m"}})
	}
	bf, err := c.SubmitMany(ctx, blocks)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, n)
	want := make([]string, n)
	for i := range n {
		keys[i], want[i] = bf[i].Key(), digest(block(i, mib))
	}
	// Every block is held on m; all but about target x limit spill.
	info := waitInfo(t, c, "m", "all blocks held, memory within the target", func(w taskgrid.WorkerInfo) bool {
		return w.Memory+w.Spilled == n*mib && float64(w.Memory) <= taskgrid.DefaultMemoryTarget*limit && !w.Paused
	})
	if info.MemoryLimit != limit || info.Spilled < (n-2)*mib || info.RSS == 0 {
		t.Errorf("Status of m: %+v; want limit %d, at least %d bytes spilled, an RSS", info, limit, (n-2)*mib)
	}
	dirs := spillDirs(t, tmp)
	if len(dirs) != 1 {
		t.Fatalf("private spill directories under TMPDIR: %v, want one", dirs)
	}
	if files, _ := os.ReadDir(dirs[0]); len(files) < n-3 {
		t.Errorf("%d spill files, want at least %d", len(files), n-3)
	}

	// Read back: by a dependent on m (from its store, whole), by one on
	// the peer (Fetch, in chunks) and by the client (upload).
	df, err := c.SubmitMany(ctx, []taskgrid.Task{
		{Key: "digest-local", Func: "go.digest", Deps: keys, Workers: []string{"m"}},
		{Key: "digest-peer", Func: "go.digest", Deps: keys, Workers: []string{"peer"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range df {
		got, err := f.Result(ctx)
		if err != nil || string(got) != strings.Join(want, ",") {
			t.Errorf("%s = %.60q..., %v; want the digests of the blocks", f.Key(), got, err)
		}
	}
	if err := c.Gather(ctx, bf...); err != nil {
		t.Fatal(err)
	}
	for i, f := range bf {
		got, err := f.Result(ctx)
		if err != nil || digest(got) != want[i] || len(got) != mib {
			t.Errorf("gathered %s: %d bytes, digest %s, %v; want %s", f.Key(), len(got), digest(got), err, want[i])
		}
	}
	if s := m.DataStats(); s.Local.N < n || s.Served.N < n || s.Uploaded.N < n {
		t.Errorf("m's data stats %+v: want every block read locally, served and uploaded", s)
	}

	// Freed: memory, spilled bytes and files go.
	if _, err := c.Release(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	waitInfo(t, c, "m", "nothing held", func(w taskgrid.WorkerInfo) bool { return w.Memory == 0 && w.Spilled == 0 })
	tgtest.Eventually(t, 10*time.Second, func() error {
		if files, _ := os.ReadDir(dirs[0]); len(files) > 0 {
			return fmt.Errorf("%d spill files left after the release", len(files))
		}
		return nil
	})
	stopM()
	if d := spillDirs(t, tmp); len(d) != 0 {
		t.Errorf("private spill directory left after Run returned: %v", d)
	}
}

func TestMemoryGivenSpillDirIsKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spill", "here")
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	var calls int
	_, stop := goWorker(t, addr, memoryFuncs(&calls), taskgrid.WithName("d"),
		taskgrid.WithMemoryLimit(2*mib), taskgrid.WithMemoryTarget(0.5), taskgrid.WithSpillDir(dir))
	waitForWorkers(t, c, 1)
	ctx := testContext(t)
	var fs []*taskgrid.Future
	for i := range 3 {
		f, err := c.Submit(ctx, taskgrid.Task{Func: "go.block", Input: fmt.Appendf(nil, "%d %d", i, mib)})
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	waitInfo(t, c, "d", "two blocks spilled", func(w taskgrid.WorkerInfo) bool { return w.Spilled == 2*mib && w.Memory == mib })
	if files, err := os.ReadDir(dir); err != nil || len(files) != 2 {
		t.Fatalf("spill directory %s: %d files, %v; want 2", dir, len(files), err)
	}
	for i, f := range fs {
		if got, err := f.Result(ctx); err != nil || digest(got) != digest(block(i, mib)) {
			t.Errorf("block %d: %d bytes, %v", i, len(got), err)
		}
	}
	stop()
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the given spill directory is gone after Run: %v", err)
	}
}

func TestMemoryPauseStopsAssignments(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	var calls int
	goWorker(t, addr, memoryFuncs(&calls), taskgrid.WithName("p"), taskgrid.WithNThreads(1),
		taskgrid.WithMemoryLimit(4*mib), taskgrid.WithMemoryTarget(0), taskgrid.WithMemoryPause(0.5))
	waitForWorkers(t, c, 1)
	ctx := testContext(t)
	big, err := c.Submit(ctx, taskgrid.Task{Key: "big", Func: "go.block", Input: fmt.Appendf(nil, "1 %d", 3*mib)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.Result(ctx); err != nil {
		t.Fatal(err)
	}
	waitInfo(t, c, "p", "paused", func(w taskgrid.WorkerInfo) bool { return w.Paused && w.Memory == 3*mib && w.Spilled == 0 })

	next, err := c.Submit(ctx, taskgrid.Task{Key: "next", Func: "go.calls"})
	if err != nil {
		t.Fatal(err)
	}
	// A paused worker is given nothing: the task stays ready while the
	// scheduler would otherwise assign it within a loop turn.
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); {
		st, err := c.Status(ctx, "next")
		if err != nil {
			t.Fatal(err)
		}
		if s := st.Keys[0].State; s != taskgrid.StateReady {
			t.Fatalf("next is %v on a paused worker, want ready", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Freed, the worker resumes and runs it.
	if _, err := c.Release(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	if got, err := next.Result(ctx); err != nil || string(got) != "1" {
		t.Fatalf("next after the release: %q, %v", got, err)
	}
	waitInfo(t, c, "p", "unpaused", func(w taskgrid.WorkerInfo) bool { return !w.Paused && w.Memory == 0 })
}

func TestMemoryResultTooLarge(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	var calls int
	goWorker(t, addr, memoryFuncs(&calls), taskgrid.WithName("t"), taskgrid.WithNThreads(1),
		taskgrid.WithMemoryLimit(mib), taskgrid.WithMemoryTarget(0))
	waitForWorkers(t, c, 1)
	ctx := testContext(t)
	huge, err := c.Submit(ctx, taskgrid.Task{Key: "huge", Func: "go.block", Input: fmt.Appendf(nil, "1 %d", 2*mib)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = huge.Result(ctx)
	var te *taskgrid.TaskError
	if !errors.As(err, &te) || !errors.Is(err, taskgrid.ErrResultTooLarge) {
		t.Fatalf("a 2 MiB result on a 1 MiB worker: %v, want tg.ResultTooLarge", err)
	}
	for _, w := range []string{"2097152 bytes", "memory limit 1048576 bytes", "spilling is off"} {
		if !strings.Contains(te.Message, w) {
			t.Errorf("message %q does not say %q", te.Message, w)
		}
	}
	// The worker goes on: a result it can hold is held.
	ok, err := c.Submit(ctx, taskgrid.Task{Key: "ok", Func: "go.block", Input: fmt.Appendf(nil, "2 %d", 500_000)})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ok.Result(ctx); err != nil || digest(got) != digest(block(2, 500_000)) {
		t.Fatalf("after: %d bytes, %v", len(got), err)
	}
	waitInfo(t, c, "t", "the second result held", func(w taskgrid.WorkerInfo) bool { return w.Memory == 500_000 })
}

func TestMemoryOptionErrors(t *testing.T) {
	for _, tt := range []struct {
		opt  taskgrid.Option
		want string
	}{
		{taskgrid.WithMemoryLimit(-5), "memory limit -5"},
		{taskgrid.WithMemoryTarget(1.5), "memory target must be a fraction"},
		{taskgrid.WithMemoryPause(math.NaN()), "memory pause must be a fraction"},
		{taskgrid.WithSpillDir("/proc/no/such"), "spill directory"},
	} {
		w := taskgrid.NewWorker("tcp://127.0.0.1:1", tt.opt, taskgrid.WithLogger(tgtest.Logger(t)))
		if err := w.Register("go.noop", func(context.Context, []byte, [][]byte) ([]byte, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
		if err := w.Run(testContext(t)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run: %v, want an error with %q", err, tt.want)
		}
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{
		{"4GiB", 4 << 30}, {"500MB", 500_000_000}, {"1.5kib", 1536}, {"1e6", 1_000_000},
		{"123", 123}, {"none", 0}, {"0", 0}, {"2 M", 2_000_000}, {"1g", 1_000_000_000},
	} {
		if got, err := taskgrid.ParseMemoryLimit(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	if got, err := taskgrid.ParseMemoryLimit("auto"); err != nil || got <= 0 || uint64(got) != taskgrid.TotalMemory() {
		t.Errorf("ParseMemoryLimit(auto) = %d, %v; want TotalMemory() = %d", got, err, taskgrid.TotalMemory())
	}
	for _, bad := range []string{"4XB", "lots", "-1", "", "1e30", "GiB"} {
		if _, err := taskgrid.ParseMemoryLimit(bad); err == nil || !strings.Contains(err.Error(), "must be bytes") {
			t.Errorf("ParseMemoryLimit(%q): %v, want an error", bad, err)
		}
	}
	for in, want := range map[string]float64{"none": 0, "0.7": 0.7, "1": 1, "0": 0} {
		if got, err := taskgrid.ParseMemoryFraction(in); err != nil || got != want {
			t.Errorf("ParseMemoryFraction(%q) = %g, %v; want %g", in, got, err, want)
		}
	}
	for _, bad := range []string{"1.5", "-0.1", "half", "NaN"} {
		if _, err := taskgrid.ParseMemoryFraction(bad); err == nil {
			t.Errorf("ParseMemoryFraction(%q): no error", bad)
		}
	}
}

// report waits for a memory report that ok accepts.
func (l *fakeLink) report(t *testing.T, what string, ok func(*pb.MemoryReport) bool) *pb.MemoryReport {
	t.Helper()
	var got *pb.MemoryReport
	l.collect(t, func(m *pb.WorkerMessage) bool {
		for _, x := range m.GetResults() {
			l.results[x.GetKey()] = x
		}
		if m.GetMemory() == nil {
			t.Fatalf("a message without a memory report (want %s)", what)
		}
		got = m.GetMemory()
		return ok(got)
	})
	return got
}

// Against the fake scheduler: spilled results are served by Fetch and by
// an upload from their files, and an upload asked for in the same message
// as the free of its key still goes out whole, though the file's name is
// gone at once.
func TestMemorySpilledFetchAndUploadAfterFree(t *testing.T) {
	f := startFakeSched(t, 64<<10, nil)
	dir := t.TempDir()
	w, l, _ := dataWorker(t, f, "s", taskgrid.WithMemoryLimit(4*mib), taskgrid.WithMemoryTarget(0.25), taskgrid.WithSpillDir(dir))
	const size = 3_000_000
	l.assign(bytesTask("a", size), bytesTask("b", size))
	l.result(t, "a")
	l.result(t, "b")
	rep := l.report(t, "both spilled", func(r *pb.MemoryReport) bool { return r.GetSpilled() == 2*size })
	if rep.GetMemory() != 0 || rep.GetLimit() != 4*mib || rep.GetPaused() || rep.GetRss() == 0 {
		t.Errorf("report %v: want nothing in memory, the limit, not paused, an RSS", rep)
	}
	ctx := testContext(t)
	if got, _, err := fetch(ctx, w.DataAddress(), "b", nil); err != nil || !bytes.Equal(got, pattern(size)) {
		t.Fatalf("fetch of spilled b: %d bytes, %v", len(got), err)
	}

	l.send(&pb.SchedulerMessage{Upload: []*pb.Upload{{Id: 3, Key: "a"}}, Free: []string{"a", "b"}})
	var buf []byte
	l.collect(t, func(m *pb.WorkerMessage) bool {
		for _, c := range m.GetChunks() {
			if c.GetUpload() != 3 || c.GetOffset() != uint64(len(buf)) || crc32.ChecksumIEEE(c.GetData()) != c.GetCrc32() {
				t.Fatalf("bad upload chunk: upload %d, offset %d (%d expected)", c.GetUpload(), c.GetOffset(), len(buf))
			}
			buf = append(buf, c.GetData()...)
		}
		if len(m.GetMissing()) > 0 {
			t.Fatalf("the worker reports %v missing", m.GetMissing())
		}
		return len(buf) == size
	})
	if !bytes.Equal(buf, pattern(size)) {
		t.Fatal("the upload of spilled a differs from what was stored")
	}
	l.report(t, "an empty store", func(r *pb.MemoryReport) bool { return r.GetSpilled() == 0 && r.GetMemory() == 0 })
	if files, err := os.ReadDir(dir); err != nil || len(files) != 0 {
		t.Errorf("spill directory after the free: %d files, %v; want none", len(files), err)
	}
}
