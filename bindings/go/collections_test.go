// SPDX-License-Identifier: Apache-2.0

// collections_test.go: MapPartitions and TreeReduce on a real C scheduler
// with two Go workers. 1,000 partitions of 1,000 numbers are generated on
// the workers (held there under --inline-limit 4096, so they move peer to
// peer to their combines) and summed in trees of fan-in 8 and 2, checked
// exactly; a tree over one input; bad input fails before anything is
// submitted, naming the problem.

package taskgrid_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

const (
	collParts   = 1000
	collPartLen = 1000
)

// collFuncs: go.range [start, count] -> [start, ..., start+count-1];
// go.sum: the sum of its arguments, numbers or arrays of numbers (exact).
func collFuncs() map[string]taskgrid.Func {
	return map[string]taskgrid.Func{
		"go.range": taskgrid.JSONFunc(func(_ context.Context, args []json.RawMessage) (any, error) {
			var start, count int64
			if len(args) != 2 || json.Unmarshal(args[0], &start) != nil || json.Unmarshal(args[1], &count) != nil {
				return nil, fmt.Errorf("go.range expects [start, count], got %d arguments", len(args))
			}
			out := make([]int64, count)
			for i := range out {
				out[i] = start + int64(i)
			}
			return out, nil
		}),
		"go.sum": taskgrid.JSONFunc(func(_ context.Context, args []json.RawMessage) (any, error) {
			var total int64
			for i, a := range args {
				var n int64
				if json.Unmarshal(a, &n) == nil {
					total += n
					continue
				}
				var ns []int64
				if err := json.Unmarshal(a, &ns); err != nil {
					return nil, fmt.Errorf("go.sum: argument %d is neither a number nor numbers: %w", i+1, err)
				}
				for _, v := range ns {
					total += v
				}
			}
			return total, nil
		}),
	}
}

func collCluster(t *testing.T) *taskgrid.Client {
	t.Helper()
	addr := tgtest.Scheduler(t, "--launcher", "none", "--inline-limit", "4096")
	for i := range 2 {
		goWorker(t, addr, collFuncs(), taskgrid.WithNThreads(2), taskgrid.WithName(fmt.Sprintf("g%d", i)))
	}
	c := dial(t, addr)
	waitForWorkers(t, c, 2)
	return c
}

func rangeParts(n, length int) []taskgrid.Partition {
	parts := make([]taskgrid.Partition, n)
	for i := range parts {
		parts[i] = taskgrid.Partition{Input: fmt.Appendf(nil, "[%d, %d]", i*length, length), Codec: "json"}
	}
	return parts
}

func TestCollectionsMapThenTreeReduceSumsExactly(t *testing.T) {
	c := collCluster(t)
	ctx := testContext(t)
	parts, err := c.MapPartitions(ctx, "go.range", rangeParts(collParts, collPartLen), taskgrid.CollectionKey("ranges"))
	if err != nil {
		t.Fatal(err)
	}
	if parts[0].Key() != "ranges-0" || parts[999].Key() != "ranges-999" {
		t.Fatalf("map keys %q .. %q, want ranges-0 .. ranges-999", parts[0].Key(), parts[999].Key())
	}
	const n = collParts * collPartLen
	const want = int64(n) * (n - 1) / 2
	for _, tc := range []struct {
		fanIn   int
		rootKey string // depth ceil(log_fanIn 1000)
	}{{8, "sum8-r4-0"}, {2, "sum2-r10-0"}} {
		root, err := c.TreeReduce(ctx, "go.sum", parts, tc.fanIn, taskgrid.CollectionKey(fmt.Sprintf("sum%d", tc.fanIn)))
		if err != nil {
			t.Fatalf("fan-in %d: %v", tc.fanIn, err)
		}
		if root.Key() != tc.rootKey {
			t.Errorf("fan-in %d: root key %q, want %q", tc.fanIn, root.Key(), tc.rootKey)
		}
		var got int64
		if err := root.Decode(ctx, &got); err != nil {
			t.Fatalf("fan-in %d: %v", tc.fanIn, err)
		}
		if got != want {
			t.Errorf("fan-in %d: sum %d, want %d", tc.fanIn, got, want)
		}
	}
	keys := make([]string, len(parts))
	for i, p := range parts {
		keys[i] = p.Key()
	}
	if _, err := c.Release(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	// Only the two roots stay: inner combines and partitions are gone.
	tgtest.Eventually(t, 10*time.Second, func() error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if st.Memory > 2 {
			return fmt.Errorf("%d results in memory, want the 2 roots", st.Memory)
		}
		return nil
	})
}

func TestCollectionsTreeOverOneInput(t *testing.T) {
	c := collCluster(t)
	ctx := testContext(t)
	parts, err := c.MapPartitions(ctx, "go.range", []taskgrid.Partition{{Input: []byte("[5, 3]"), Codec: "json"}})
	if err != nil {
		t.Fatal(err)
	}
	if k := parts[0].Key(); !strings.HasPrefix(k, "go.range-") || len(k) != len("go.range-")+18 {
		t.Errorf("key %q, want go.range-<16 hex>-0", k)
	}
	root, err := c.TreeReduce(ctx, "go.sum", parts, 8, taskgrid.CollectionKey("one"))
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	if err := root.Decode(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if root.Key() != "one-r1-0" || got != 18 {
		t.Errorf("root %q = %d, want one-r1-0 = 18", root.Key(), got)
	}
	// Map over futures: the literal input first, then the partition.
	sums, err := c.MapPartitions(ctx, "go.sum", []taskgrid.Partition{{Future: parts[0], Input: []byte("100"), Codec: "json"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sums[0].Decode(ctx, &got); err != nil || got != 118 {
		t.Errorf("go.sum(100, partition) = %d, %v; want 118", got, err)
	}
}

func TestCollectionsBadInput(t *testing.T) {
	c := collCluster(t)
	ctx := testContext(t)
	parts, err := c.MapPartitions(ctx, "go.range", rangeParts(2, 2))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"fan-in 1", func() error { _, err := c.TreeReduce(ctx, "go.sum", parts, 1); return err }, "fan-in must be 2 to 65535 (got 1)"},
		{"no futures", func() error { _, err := c.TreeReduce(ctx, "go.sum", nil, 2); return err }, "no futures to reduce"},
		{"nil future", func() error { _, err := c.TreeReduce(ctx, "go.sum", []*taskgrid.Future{nil}, 2); return err }, "future 0 is nil"},
		{"no partitions", func() error { _, err := c.MapPartitions(ctx, "go.range", nil); return err }, "no partitions to map over"},
		{"no namespace", func() error { _, err := c.MapPartitions(ctx, "range", rangeParts(1, 1)); return err }, `"namespace.name"`},
		{"unknown combine", func() error { _, err := c.TreeReduce(ctx, "go.nope", parts, 2); return err }, `function "go.nope": no connected worker provides the function`},
		{"unknown map", func() error { _, err := c.MapPartitions(ctx, "go.nope", rangeParts(1, 1)); return err }, `providing: go.range, go.sum, tg.echo`},
	} {
		err := tc.call()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
		if strings.Contains(tc.name, "unknown") && !errors.Is(err, taskgrid.ErrUnknownFunction) {
			t.Errorf("%s: %v does not match ErrUnknownFunction", tc.name, err)
		}
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Waiting+st.Ready != 0 {
		t.Errorf("%d tasks waiting or ready after refused calls, want 0", st.Waiting+st.Ready)
	}
}
