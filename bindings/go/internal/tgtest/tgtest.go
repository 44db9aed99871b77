// SPDX-License-Identifier: Apache-2.0

// Package tgtest holds test helpers of the Go binding: a real C scheduler
// and C workers started per test (stopped, and their logs shown on failure,
// by t.Cleanup), a logger that writes into the test log, and polling with a
// bounded wait.
//
// When the C binaries are missing the tests skip, saying how to build
// them, unless $CI is set: there a missing binary is a broken pipeline and
// fails.
package tgtest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/bindings/go/internal/cluster"
)

// Binaries returns the C binaries or skips the test.
func Binaries(t testing.TB) cluster.Binaries {
	t.Helper()
	b, err := cluster.FindBinaries()
	if err != nil {
		SkipOrFail(t, err.Error())
	}
	return b
}

// SkipOrFail skips with msg, or fails when $CI is set (CI must run
// everything).
func SkipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: nothing may be skipped)", msg)
	}
	t.Skip(msg)
}

// Scheduler starts a C scheduler (extra args appended, e.g. "--launcher",
// "none") and returns its address. It is stopped when the test ends.
func Scheduler(t testing.TB, args ...string) string {
	t.Helper()
	_, addr := startScheduler(t, args)
	return addr
}

// SchedulerProcess is Scheduler for tests that also need the process: to
// stop it themselves (e.g. with "--listen", a fixed address, to restart
// it) or to read its log.
func SchedulerProcess(t testing.TB, args ...string) (*cluster.Process, string) {
	t.Helper()
	return startScheduler(t, args)
}

func startScheduler(t testing.TB, args []string) (*cluster.Process, string) {
	t.Helper()
	b := Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, addr, err := cluster.StartScheduler(ctx, b, args...)
	if err != nil {
		t.Fatal(err)
	}
	cleanupProcess(t, p)
	return p, addr
}

// CWorker starts a C worker for addr with extra args (e.g. "--nthreads",
// "2", "--name", "c1"). It is stopped when the test ends.
func CWorker(t testing.TB, addr string, args ...string) *cluster.Process {
	t.Helper()
	b := Binaries(t)
	p, err := cluster.Start("taskgrid-worker", b.Worker, nil, append([]string{addr, "--log-level", "warn"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	cleanupProcess(t, p)
	return p
}

func cleanupProcess(t testing.TB, p *cluster.Process) {
	t.Cleanup(func() {
		err := p.Stop(10 * time.Second)
		if t.Failed() || err != nil {
			t.Logf("--- %s (pid %d) exited: %v; its output:\n%s", p.Name, p.Pid(), err, p.Log())
		}
	})
}

// Logger returns a logger that writes into the test's log until the test
// ends (late writes from goroutines are dropped instead of panicking).
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

var _ io.Writer = (*testWriter)(nil)

// Eventually polls cond every 20 ms until it returns nil or timeout passes,
// then fails with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BuildGoWorker builds the example Go worker (cmd/taskgrid-go-worker) into
// a temporary directory and returns the executable's path.
func BuildGoWorker(t testing.TB) string {
	t.Helper()
	bin, err := cluster.BuildGoWorker(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
