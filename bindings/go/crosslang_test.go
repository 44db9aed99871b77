// SPDX-License-Identifier: Apache-2.0

// crosslang_test.go: one graph, built from Go, crossing languages: a C
// built-in feeds a Go function which feeds a C built-in (and, when the
// Python worker is importable, a Python function); errors cross the same
// way.

package taskgrid_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/cluster"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

// crossCluster: a scheduler, one C worker and one in-process Go worker
// providing go.double and go.fail.
func crossCluster(t *testing.T) (string, *taskgrid.Client) {
	t.Helper()
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	tgtest.CWorker(t, addr, "--nthreads", "2", "--name", "c")
	goWorker(t, addr, map[string]taskgrid.Func{
		"go.double": double,
		"go.fail": func(context.Context, []byte, [][]byte) ([]byte, error) {
			return nil, &taskgrid.TaskError{Type: "go.Fail", Message: "from Go"}
		},
	}, taskgrid.WithName("go"))
	waitForWorkers(t, c, 2)
	return addr, c
}

func TestCrossLanguageCToGoToC(t *testing.T) {
	_, c := crossCluster(t)
	ctx := testContext(t)
	fs, err := c.SubmitMany(ctx, []taskgrid.Task{
		{Key: "c-inc", Func: "tg.inc", Input: []byte("41"), Codec: "json"}, // C: 42
		{Key: "go-double", Func: "go.double", Deps: []string{"c-inc"}},     // Go: 84
		{Key: "c-inc-again", Func: "tg.inc", Deps: []string{"go-double"}},  // C: 85
	})
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	if err := fs[2].Decode(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != 85 {
		t.Errorf("tg.inc(go.double(tg.inc(41))) = %v, want 85", got)
	}
}

func TestCrossLanguageErrors(t *testing.T) {
	_, c := crossCluster(t)
	tests := []struct {
		name               string
		tasks              []taskgrid.Task
		wantType, wantFrom string
	}{
		{"C error reaches a Go dependent", []taskgrid.Task{
			{Key: "c-fail", Func: "tg.fail", Input: []byte(`"from C"`), Codec: "json"},
			{Key: "go-after", Func: "go.double", Deps: []string{"c-fail"}},
		}, "tg.Fail", "c-fail"},
		{"Go error reaches a C dependent", []taskgrid.Task{
			{Key: "go-fail", Func: "go.fail"},
			{Key: "c-after", Func: "tg.inc", Deps: []string{"go-fail"}},
		}, "go.Fail", "go-fail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			fs, err := c.SubmitMany(ctx, tt.tasks)
			if err != nil {
				t.Fatal(err)
			}
			_, err = fs[1].Result(ctx)
			var te *taskgrid.TaskError
			if !errors.As(err, &te) || te.Type != tt.wantType || te.OriginKey != tt.wantFrom {
				t.Fatalf("dependent: %v (%+v), want type %s from %s", err, te, tt.wantType, tt.wantFrom)
			}
		})
	}
}

// pyFuncs is a --preload module of the Python worker: gotest.inc is x+1 in
// the JSON convention of the C built-ins.
const pyFuncs = `import taskgrid.worker

@taskgrid.worker.register("gotest.inc")
def inc(x):
    return x + 1
`

// TestCrossLanguageCToGoToPython runs when the Python worker of
// bindings/python (python -m taskgrid.worker) is installed.
func TestCrossLanguageCToGoToPython(t *testing.T) {
	python := os.Getenv("PYTHON")
	if python == "" {
		python = "python3"
	}
	// The installed package (pip install ./bindings/python): the source
	// tree lacks its generated stubs.
	if out, err := exec.Command(python, "-c", "import taskgrid.worker").CombinedOutput(); err != nil {
		t.Skipf("the Python worker is not installed (%s -c 'import taskgrid.worker': %v: %s)",
			python, err, lastLine(string(out)))
	}
	preload := filepath.Join(t.TempDir(), "gotest_funcs.py")
	if err := os.WriteFile(preload, []byte(pyFuncs), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, c := crossCluster(t)
	p, err := cluster.Start("python worker", python, nil, "-m", "taskgrid.worker", addr,
		"--name", "py", "--nthreads", "1", "--log-level", "warn", "--preload", preload)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil || t.Failed() {
			t.Logf("python worker: %v\n%s", err, p.Log())
		}
	})
	waitForWorkers(t, c, 3)
	ctx := testContext(t)
	fs, err := c.SubmitMany(ctx, []taskgrid.Task{
		// The Python worker provides the tg.* built-ins too: pin this one
		// to the C worker.
		{Key: "c-inc", Func: "tg.inc", Input: []byte("41"), Codec: "json", Workers: []string{"c"}}, // C: 42
		{Key: "go-double", Func: "go.double", Deps: []string{"c-inc"}},                             // Go: 84
		{Key: "py-inc", Func: "gotest.inc", Deps: []string{"go-double"}},                           // Python: 85
	})
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	if err := fs[2].Decode(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != 85 {
		t.Errorf("gotest.inc(go.double(tg.inc(41))) = %v, want 85", got)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
