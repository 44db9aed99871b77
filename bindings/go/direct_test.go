// SPDX-License-Identifier: Apache-2.0

// direct_test.go: WithDirectToWorkers against a real C scheduler and Go
// workers. A holder's DataStats tell where the bytes went: Served counts
// its DataService.Fetch answers, Uploaded what it sent up to the scheduler
// (the only way a held result's bytes reach the scheduler). So Served 1,
// Uploaded 0 on the only holder: the client got the result from it, and
// nothing went through the scheduler.

package taskgrid_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/cluster"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

// bytesFuncs: go.bytes(N) makes N bytes 'x' on the worker.
var bytesFuncs = map[string]taskgrid.Func{
	"go.bytes": func(_ context.Context, in []byte, _ [][]byte) ([]byte, error) {
		n, err := strconv.Atoi(string(in))
		return bytes.Repeat([]byte{'x'}, n), err
	},
}

// makeHeld runs go.bytes(n) on worker `where` and returns its result as
// the client got it.
func makeHeld(t *testing.T, c *taskgrid.Client, where string, n int) []byte {
	t.Helper()
	ctx := testContext(t)
	f, err := c.Submit(ctx, taskgrid.Task{Func: "go.bytes", Input: []byte(strconv.Itoa(n)), Workers: []string{where}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Result(ctx)
	if err != nil {
		t.Fatalf("go.bytes(%d) on %s: %v", n, where, err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{'x'}, n)) {
		t.Fatalf("go.bytes(%d) on %s: %d wrong bytes", n, where, len(got))
	}
	return got
}

// logTo is a client logger writing into buf, for the fallback warnings.
func logTo(buf *cluster.SyncBuffer) taskgrid.Option {
	return taskgrid.WithLogger(slog.New(slog.NewTextHandler(buf, nil)))
}

func directWarnings(buf *cluster.SyncBuffer) []string {
	var out []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "direct_to_workers") {
			out = append(out, l)
		}
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestDirectToWorkersMovesNoBytesThroughTheScheduler(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	w, _ := goWorker(t, addr, bytesFuncs, taskgrid.WithName("holder"), taskgrid.WithDataListen("127.0.0.1:0"))
	var log cluster.SyncBuffer
	direct := dial(t, addr, taskgrid.WithDirectToWorkers(true), logTo(&log))
	gateway := dial(t, addr)
	waitForWorkers(t, direct, 1)

	makeHeld(t, direct, "holder", 30*mib)
	if s := w.DataStats(); s.Served.N != 1 || s.Served.Bytes != 30*mib || s.Uploaded.N != 0 {
		t.Fatalf("after a direct gather: %+v, want served 1 (30 MiB) and nothing uploaded", s)
	}
	if ws := directWarnings(&log); len(ws) != 0 {
		t.Fatalf("warnings: %q", ws)
	}
	// The control: a default client's result comes through the scheduler.
	makeHeld(t, gateway, "holder", 2*mib)
	if s := w.DataStats(); s.Served.N != 1 || s.Uploaded.N != 1 || s.Uploaded.Bytes != 2*mib {
		t.Fatalf("after a gateway gather: %+v, want 1 upload of 2 MiB", s)
	}
}

func TestDirectToWorkersFallsBackWhenTheHolderIsUnreachable(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	nobody := freeAddr(t)
	w, _ := goWorker(t, addr, bytesFuncs, taskgrid.WithName("holder"), taskgrid.WithDataListen("127.0.0.1:0"), taskgrid.WithDataAddress(nobody))
	var log cluster.SyncBuffer
	c := dial(t, addr, taskgrid.WithDirectToWorkers(true), logTo(&log))
	waitForWorkers(t, c, 1)

	makeHeld(t, c, "holder", 3*mib)
	ws := directWarnings(&log)
	if len(ws) != 1 || !strings.Contains(ws[0], "holder "+nobody+": UNAVAILABLE") || !strings.Contains(ws[0], "through the scheduler") {
		t.Fatalf("warnings %q, want one naming holder %s and UNAVAILABLE", ws, nobody)
	}
	if s := w.DataStats(); s.Served.N != 0 || s.Uploaded.N != 1 {
		t.Fatalf("%+v, want the result uploaded for the scheduler's relay", s)
	}
}

func TestDirectToWorkersOverTLSNeedsDataClients(t *testing.T) {
	pki := newPKI(t)
	ca := filepath.Join(pki.dir, "ca.pem")
	schedCert, schedKey := pki.issue(t, "scheduler", "scheduler", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	addr := tgtest.Scheduler(t, "--launcher", "none", "--listen", "tls://127.0.0.1:0",
		"--tls-ca", ca, "--tls-cert", schedCert, "--tls-key", schedKey)
	closed, _ := goWorker(t, addr, bytesFuncs, taskgrid.WithName("closed"),
		taskgrid.WithSecurity(pki.security(t, "worker-closed", "worker")))
	open, _ := goWorker(t, addr, bytesFuncs, taskgrid.WithName("open"), taskgrid.WithDataClients(true),
		taskgrid.WithSecurity(pki.security(t, "worker-open", "worker")))
	var log cluster.SyncBuffer
	c := dial(t, addr, taskgrid.WithSecurity(pki.security(t, "client", "client")),
		taskgrid.WithDirectToWorkers(true), logTo(&log))
	waitForWorkers(t, c, 2)

	makeHeld(t, c, "closed", 3*mib)
	ws := directWarnings(&log)
	if len(ws) != 1 || !strings.Contains(ws[0], "PERMISSION_DENIED") || !strings.Contains(ws[0], "--data-clients") {
		t.Fatalf("warnings %q, want one saying PERMISSION_DENIED and --data-clients", ws)
	}
	if s := closed.DataStats(); s.Served.N != 0 || s.Uploaded.N != 1 {
		t.Fatalf("closed: %+v, want the result through the scheduler", s)
	}
	makeHeld(t, c, "open", 3*mib)
	if ws := directWarnings(&log); len(ws) != 1 {
		t.Fatalf("warnings %q, want still one", ws)
	}
	if s := open.DataStats(); s.Served.N != 1 || s.Uploaded.N != 0 {
		t.Fatalf("open: %+v, want the result fetched directly", s)
	}
}
