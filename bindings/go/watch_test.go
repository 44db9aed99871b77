// SPDX-License-Identifier: Apache-2.0

// watch_test.go: Watch, Progress and SetLogLevel against the real C
// scheduler and workers. They skip, saying so, while the scheduler
// answers Unimplemented for Watch or SetLogLevel, and pass once it
// implements them.

package taskgrid_test

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
)

func skipIfUnimplemented(t *testing.T, err error, what string) {
	t.Helper()
	if status.Code(err) == codes.Unimplemented {
		t.Skipf("the scheduler does not implement %s yet (Unimplemented: %v); this test passes once it does", what, err)
	}
}

func TestWatchDiamondInOrder(t *testing.T) {
	_, c := cCluster(t, 2, 2)
	ctx := testContext(t)
	tag := taskgrid.NewKey("dia")
	tasks := []taskgrid.Task{
		{Key: tag + "-a", Func: "tg.inc", Input: []byte("1"), Codec: "json"},
		{Key: tag + "-b", Func: "tg.inc", Deps: []string{tag + "-a"}},
		{Key: tag + "-c", Func: "tg.dec", Deps: []string{tag + "-a"}},
		{Key: tag + "-d", Func: "tg.add", Deps: []string{tag + "-b", tag + "-c"}},
	}
	keys := []string{tag + "-a", tag + "-b", tag + "-c", tag + "-d"}
	w, err := c.Watch(ctx, taskgrid.WatchOptions{Keys: keys, TaskEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first, err := w.Next()
	skipIfUnimplemented(t, err, "Watch")
	if err != nil {
		t.Fatal(err)
	}
	if first.KeysCounts.Released != 4 {
		t.Errorf("before the submit the keys are unknown (released): %+v", first.KeysCounts)
	}
	if _, err := c.SubmitMany(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	var events []taskgrid.TaskEvent
	for {
		u, err := w.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, u.Tasks...)
		if u.KeysCounts.Memory == 4 {
			break
		}
	}
	finished := map[string]int{}
	for i, e := range events {
		if e.State == taskgrid.StateMemory {
			finished[e.Key] = i
			if e.Worker == "" {
				t.Errorf("memory event without a worker: %+v", e)
			}
		}
	}
	a, b, cc, d := finished[keys[0]], finished[keys[1]], finished[keys[2]], finished[keys[3]]
	if len(finished) != 4 || a >= b || a >= cc || b >= d || cc >= d {
		t.Errorf("finishing order %v in %+v", finished, events)
	}
}

func TestProgressAndLogLevelForReal(t *testing.T) {
	_, c := cCluster(t, 2, 2)
	ctx := testContext(t)
	var tasks []taskgrid.Task
	for i := range 20 {
		tasks = append(tasks, jsonTask("tg.inc", fmt.Sprint(i)))
	}
	tasks = append(tasks, jsonTask("tg.fail", `"no"`))
	fs, err := c.SubmitMany(ctx, tasks)
	if err != nil {
		t.Fatal(err)
	}
	var last taskgrid.ProgressInfo
	err = c.Progress(ctx, fs, func(p taskgrid.ProgressInfo) { last = p })
	skipIfUnimplemented(t, err, "Watch")
	if err != nil {
		t.Fatal(err)
	}
	if last.Done != 21 || last.Total != 21 || last.Counts.Erred != 1 {
		t.Errorf("last progress %+v", last)
	}
	prev, err := c.SetLogLevel(ctx, "debug")
	skipIfUnimplemented(t, err, "SetLogLevel")
	if err != nil {
		t.Fatal(err)
	}
	if back, err := c.SetLogLevel(ctx, prev); err != nil || back != "debug" {
		t.Errorf("restoring %q: %q %v", prev, back, err)
	}
}
