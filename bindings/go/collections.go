// SPDX-License-Identifier: Apache-2.0

// collections.go: collection helpers without Dask: MapPartitions submits a
// registered function over partitions, TreeReduce combines futures in a
// tree of bounded fan-in. Both build their graph here, keys included, and
// send it with SubmitMany in one call; the only other call is the Status
// that checks that a connected worker provides the function. The key
// scheme and the tree's shape are those of the C SDK's tg_client_map and
// tg_client_tree_reduce.

package taskgrid

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// MaxFanIn is the largest fan-in of TreeReduce (dependencies of one task).
const MaxFanIn = 65535

// maxCollectionKey is the longest CollectionKey: room is left for the
// suffixes within MaxKeyLen.
const maxCollectionKey = MaxKeyLen - 32

// ErrUnknownFunction matches (errors.Is) the error of MapPartitions and
// TreeReduce when no connected worker provides the function; the error
// reads "taskgrid: <op>: function "x": no connected worker provides the
// function (N workers connected, providing: ...)".
var ErrUnknownFunction = errors.New("no connected worker provides the function")

// Partition is what one call of MapPartitions' function gets: Input (with
// Codec, "" meaning raw) and, if Future is not nil, its result as the one
// dependency, after the input, as for any task.
type Partition struct {
	Future *Future
	Input  []byte
	Codec  string
}

// PartitionsOf makes one Partition per future, with no input.
func PartitionsOf(fs []*Future) []Partition {
	parts := make([]Partition, len(fs))
	for i, f := range fs {
		parts[i].Future = f
	}
	return parts
}

// CollectionOption changes what MapPartitions and TreeReduce submit.
type CollectionOption func(*collectionConfig)

type collectionConfig struct {
	key       string
	priority  int32
	retries   uint32
	resources map[string]float64
	workers   []string
	noCheck   bool
}

// CollectionKey sets the key prefix P: task i of MapPartitions is "P-<i>",
// combine j of level L of TreeReduce (1 combines the inputs) is
// "P-r<L>-<j>", decimal from 0, so calls with the same P name the same
// tasks, and one P may serve a map and the reduction of its results.
// Default: a new NewKey(fn) per call, so two calls never share keys. At
// most MaxKeyLen-32 bytes.
func CollectionKey(prefix string) CollectionOption {
	return func(c *collectionConfig) { c.key = prefix }
}

// CollectionPriority sets the priority of map tasks (default 0). A combine
// of level L gets priority+L, so a ready combine runs before more map
// tasks or lower combines and frees its inputs early.
func CollectionPriority(p int32) CollectionOption {
	return func(c *collectionConfig) { c.priority = p }
}

// CollectionRetries sets the retries of every task.
func CollectionRetries(n uint32) CollectionOption {
	return func(c *collectionConfig) { c.retries = n }
}

// CollectionResources sets the resources every task holds while it runs.
func CollectionResources(r map[string]float64) CollectionOption {
	return func(c *collectionConfig) { c.resources = r }
}

// CollectionWorkers restricts every task to workers of these names.
func CollectionWorkers(names ...string) CollectionOption {
	return func(c *collectionConfig) { c.workers = names }
}

// SkipFunctionCheck skips the Status call that checks that a connected
// worker provides the function.
func SkipFunctionCheck() CollectionOption {
	return func(c *collectionConfig) { c.noCheck = true }
}

// MapPartitions submits fn over parts, one task each, in one SubmitMany,
// and returns one Future per partition, in order (Dask's map_partitions,
// for functions registered on workers). It fails before submitting
// anything when parts is empty, fn is not "namespace.name", or no
// connected worker provides fn (errors.Is ErrUnknownFunction; the error
// lists what the workers provide). While no worker is connected the check
// is skipped: the scheduler keeps the tasks until one joins.
func (c *Client) MapPartitions(ctx context.Context, fn string, parts []Partition, opts ...CollectionOption) ([]*Future, error) {
	cfg, err := c.beginCollection(ctx, "map partitions", fn, len(parts) == 0, "no partitions to map over", opts)
	if err != nil {
		return nil, err
	}
	prefix := cfg.prefix(fn)
	tasks := make([]Task, len(parts))
	for i, p := range parts {
		t := cfg.task(fn, fmt.Sprintf("%s-%d", prefix, i), cfg.priority)
		t.Input, t.Codec = p.Input, p.Codec
		if p.Future != nil {
			t.Deps = []string{p.Future.Key()}
		}
		tasks[i] = t
	}
	fs, err := c.SubmitMany(ctx, tasks)
	if err != nil {
		return nil, fmt.Errorf("taskgrid: map partitions: %w", err)
	}
	return fs, nil
}

// TreeReduce combines the results of futures with fn, at most fanIn at a
// time, in a tree of depth ceil(log_fanIn(n)) (1 for one input) submitted
// in one SubmitMany, and returns the root's Future. Level 1 splits the
// inputs, in order, into ceil(n/fanIn) consecutive groups whose sizes
// differ by at most one; each is one task running fn with the group's
// results as its dependencies, in order; level L+1 does the same with
// level L's results until one task remains. So fn must take 1 to fanIn
// arguments and be associative (order is kept; it need not be
// commutative). Each combine runs where its inputs are (they move peer to
// peer) at a higher priority than map tasks (see CollectionPriority).
//
// The inner combines are released at once (a result is kept while the
// combine above it needs it, and forgotten after); the inputs stay held by
// this client: release them after TreeReduce so each goes once used.
// Errors as MapPartitions, and for fanIn outside 2..MaxFanIn or a nil
// future.
func (c *Client) TreeReduce(ctx context.Context, fn string, futures []*Future, fanIn int, opts ...CollectionOption) (*Future, error) {
	if fanIn < 2 || fanIn > MaxFanIn {
		return nil, fmt.Errorf("taskgrid: tree reduce: fan-in must be 2 to %d (got %d)", MaxFanIn, fanIn)
	}
	if i := slices.Index(futures, nil); i >= 0 {
		return nil, fmt.Errorf("taskgrid: tree reduce: future %d is nil", i)
	}
	cfg, err := c.beginCollection(ctx, "tree reduce", fn, len(futures) == 0, "no futures to reduce", opts)
	if err != nil {
		return nil, err
	}
	prefix := cfg.prefix(fn)
	seq := make([]string, len(futures))
	for i, f := range futures {
		seq[i] = f.Key()
	}
	var tasks []Task
	for level := 1; ; level++ {
		m := len(seq)
		groups := (m + fanIn - 1) / fanIn
		base, extra, at := m/groups, m%groups, 0
		next := make([]string, groups)
		for j := range groups {
			size := base
			if j < extra {
				size++
			}
			prio := int32(min(int64(cfg.priority)+int64(level), math.MaxInt32))
			t := cfg.task(fn, fmt.Sprintf("%s-r%d-%d", prefix, level, j), prio)
			t.Deps = seq[at : at+size]
			tasks = append(tasks, t)
			next[j] = t.Key
			at += size
		}
		if groups == 1 {
			break
		}
		seq = next
	}
	fs, err := c.SubmitMany(ctx, tasks)
	if err != nil {
		return nil, fmt.Errorf("taskgrid: tree reduce: %w", err)
	}
	inner := make([]string, 0, len(fs)-1)
	for _, f := range fs[:len(fs)-1] {
		inner = append(inner, f.Key())
	}
	if _, err := c.Release(ctx, inner...); err != nil {
		// The tree runs; only this client's holds on its inner results
		// remain, until Close.
		return fs[len(fs)-1], fmt.Errorf("taskgrid: tree reduce: submitted, but releasing the inner combines failed: %w", err)
	}
	return fs[len(fs)-1], nil
}

// beginCollection checks what both helpers share and returns the options.
func (c *Client) beginCollection(ctx context.Context, op, fn string, empty bool, emptyMsg string, opts []CollectionOption) (collectionConfig, error) {
	var cfg collectionConfig
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case empty:
		return cfg, fmt.Errorf("taskgrid: %s: %s", op, emptyMsg)
	case fn == "":
		return cfg, fmt.Errorf("taskgrid: %s: no function", op)
	case !strings.Contains(fn, "."):
		return cfg, fmt.Errorf("taskgrid: %s: function %q is not \"namespace.name\" (e.g. \"tg.sum\")", op, fn)
	case len(cfg.key) > maxCollectionKey:
		return cfg, fmt.Errorf("taskgrid: %s: key prefix of %d bytes is longer than %d", op, len(cfg.key), maxCollectionKey)
	}
	if err := c.checkOpen(); err != nil {
		return cfg, err
	}
	if cfg.noCheck {
		return cfg, nil
	}
	st, err := c.Status(ctx)
	if err != nil {
		return cfg, fmt.Errorf("taskgrid: %s: checking the function: %w", op, err)
	}
	if len(st.Workers) == 0 {
		return cfg, nil // nobody to ask: the tasks wait for a worker
	}
	var provided []string
	for _, w := range st.Workers {
		if slices.Contains(w.Functions, fn) {
			return cfg, nil
		}
		provided = append(provided, w.Functions...)
	}
	slices.Sort(provided)
	provided = slices.Compact(provided)
	return cfg, fmt.Errorf("taskgrid: %s: function %q: %w (%d workers connected, providing: %s)",
		op, fn, ErrUnknownFunction, len(st.Workers), strings.Join(provided, ", "))
}

// prefix is the key prefix of one call.
func (cfg *collectionConfig) prefix(fn string) string {
	if cfg.key != "" {
		return cfg.key
	}
	if len(fn) > maxCollectionKey-17 {
		fn = fn[:maxCollectionKey-17]
	}
	return NewKey(fn)
}

func (cfg *collectionConfig) task(fn, key string, priority int32) Task {
	return Task{
		Key: key, Func: fn, Priority: priority, Retries: cfg.retries,
		Resources: cfg.resources, Workers: cfg.workers,
	}
}
