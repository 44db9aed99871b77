// SPDX-License-Identifier: Apache-2.0

// coordination_test.go: Variable, Queue, Event and Semaphore kept by the
// scheduler, between Go clients, and shared by a Go client and a Python
// client (when the Python binding is importable).

package taskgrid_test

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/cluster"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

func TestCoordinationBetweenGoClients(t *testing.T) {
	addr, a := cCluster(t, 1, 2)
	b := dial(t, addr)
	ctx := testContext(t)

	// Queue: FIFO across clients; an empty Get times out.
	qa, qb := a.Queue("go-q", 0), b.Queue("go-q", 0)
	for _, v := range []string{"1", `"two"`} {
		if err := qa.Put(ctx, taskgrid.JSONValue([]byte(v)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := qb.Size(ctx); err != nil || n != 2 {
		t.Fatalf("Size = %d, %v; want 2", n, err)
	}
	got, err := qb.Get(ctx, 2, taskgrid.Forever)
	if err != nil || len(got) != 2 || string(got[0].Data) != "1" || string(got[1].Data) != `"two"` {
		t.Fatalf("Get(2) = %+v, %v", got, err)
	}
	start := time.Now()
	if _, err := qb.Get(ctx, 1, 200*time.Millisecond); !errors.Is(err, taskgrid.ErrCoordTimeout) {
		t.Fatalf("Get of an empty queue: %v, want ErrCoordTimeout", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("Get timed out after %v, before its 200ms", d)
	}

	// Variable holding a future: the result outlives the writer's hold.
	f, err := a.Submit(ctx, jsonTask("tg.inc", "41"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Variable("go-v").Set(ctx, taskgrid.FutureValue(f)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Release(ctx, f.Key()); err != nil {
		t.Fatal(err)
	}
	v, err := b.Variable("go-v").Get(ctx, taskgrid.Forever)
	if err != nil || v.Key != f.Key() {
		t.Fatalf("Variable.Get = %+v, %v; want key %s", v, err, f.Key())
	}
	var n float64
	if err := b.Future(v.Key).Decode(ctx, &n); err != nil || n != 42 {
		t.Fatalf("the variable's future = %v, %v; want 42", n, err)
	}

	// Semaphore(2): a third caller waits until a lease is released.
	s1, s2 := a.Semaphore("go-sem", 2), b.Semaphore("go-sem", 2)
	l1, err := s1.Acquire(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Acquire(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Acquire(ctx, 200*time.Millisecond); !errors.Is(err, taskgrid.ErrCoordTimeout) {
		t.Fatalf("third Acquire: %v, want ErrCoordTimeout", err)
	}
	if ok, err := l1.Release(ctx); err != nil || !ok {
		t.Fatalf("Release = %v, %v", ok, err)
	}
	if _, err := s2.Acquire(ctx, taskgrid.Forever); err != nil {
		t.Fatal(err)
	}
	if held, err := s1.Value(ctx); err != nil || held != 2 {
		t.Fatalf("Value = %d, %v; want 2", held, err)
	}
}

const pyPeer = `import json, sys, taskgrid
c = taskgrid.Client(sys.argv[1])
assert taskgrid.Event("go-ready").wait(30)
x = taskgrid.Queue("from-go").get(timeout=30)
taskgrid.Queue("from-py").put(x + 1)
taskgrid.Event("py-done").set()
c.close()
`

// TestCoordinationGoAndPython: a Go client and a Python client share an
// Event and two Queues, values as JSON.
func TestCoordinationGoAndPython(t *testing.T) {
	python := os.Getenv("PYTHON")
	if python == "" {
		python = "python3"
	}
	if out, err := exec.Command(python, "-c", "import taskgrid.coordination").CombinedOutput(); err != nil {
		t.Skipf("the Python binding with coordination is not importable (%s: %v: %s)",
			python, err, lastLine(string(out)))
	}
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	ctx := testContext(t)
	p, err := cluster.Start("python client", python, nil, "-c", pyPeer, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); t.Failed() {
			t.Logf("python client: %v\n%s", err, p.Log())
		}
	})
	if err := c.Queue("from-go", 0).Put(ctx, taskgrid.JSONValue([]byte("41")), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Event("go-ready").Set(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.Queue("from-py", 0).Get(ctx, 1, taskgrid.Forever)
	if err != nil || len(got) != 1 || string(got[0].Data) != "42" || got[0].Codec != "json" {
		t.Fatalf("from Python: %+v, %v; want json 42", got, err)
	}
	if ok, err := c.Event("py-done").Wait(ctx, taskgrid.Forever); err != nil || !ok {
		t.Fatalf("py-done: %v, %v", ok, err)
	}
}
