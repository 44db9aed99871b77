// Which worker ran a task and for how long (Status: KeyStatus.Worker and
// RunTime), with Go workers timing their own calls.
package taskgrid_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
)

func TestStatusNamesTheGoWorkerThatRanATaskAndHowLong(t *testing.T) {
	addr := tgtest.Scheduler(t, "--launcher", "none")
	c := dial(t, addr)
	nap := func(ctx context.Context, in []byte, deps [][]byte) ([]byte, error) {
		select {
		case <-time.After(50 * time.Millisecond):
			return in, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	fail := func(context.Context, []byte, [][]byte) ([]byte, error) { return nil, errors.New("boom") }
	funcs := map[string]taskgrid.Func{"go.nap": nap, "go.fail": fail}
	goWorker(t, addr, funcs, taskgrid.WithName("ga"))
	goWorker(t, addr, funcs, taskgrid.WithName("gb"))
	waitForWorkers(t, c, 2)
	ctx := testContext(t)
	fs, err := c.SubmitMany(ctx, []taskgrid.Task{
		{Key: "on-ga", Func: "go.nap", Workers: []string{"ga"}},
		{Key: "on-gb", Func: "go.nap", Workers: []string{"gb"}},
		{Key: "bad", Func: "go.fail", Workers: []string{"gb"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Gather(ctx, fs...) // "bad" fails
	st, err := c.Status(ctx, "on-ga", "on-gb", "bad", "unknown")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		worker   string
		min, max time.Duration
	}{{"ga", 50 * time.Millisecond, 10 * time.Second}, {"gb", 50 * time.Millisecond, 10 * time.Second}, {"gb", 0, 10 * time.Second}, {"", 0, 0}}
	if len(st.Keys) != len(want) {
		t.Fatalf("Status keys = %+v, want %d", st.Keys, len(want))
	}
	for i, w := range want {
		k := st.Keys[i]
		if k.Worker != w.worker || k.RunTime < w.min || k.RunTime > w.max {
			t.Errorf("%s: worker %q, run time %v; want %q and %v..%v", k.Key, k.Worker, k.RunTime, w.worker, w.min, w.max)
		}
	}
}
