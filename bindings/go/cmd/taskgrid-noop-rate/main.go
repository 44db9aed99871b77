// SPDX-License-Identifier: Apache-2.0

// Command taskgrid-noop-rate measures how many no-op tasks per second go
// through taskgrid end to end from a Go client: each round submits N
// independent no-op tasks in one SubmitMany, gathers them over one Gather
// stream, and releases them; it prints every round's rate and the median.
// The Go twin of sdk/examples/noop_rate.c.
//
// By default it starts its own cluster: a C scheduler whose local launcher
// starts the workers, either C workers (taskgrid-worker, running tg.noop)
// or Go workers (taskgrid-go-worker, built on the fly, running go.noop):
//
//	go run ./cmd/taskgrid-noop-rate -workers-lang c  -n 10000
//	go run ./cmd/taskgrid-noop-rate -workers-lang go -n 10000
//
// The C binaries come from $TASKGRID_BIN_DIR or the repository's bazel-bin
// (`bazel build -c opt //scheduler //worker` for numbers worth quoting).
// With -address it uses a running scheduler and its workers instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/cluster"
)

func main() {
	n := flag.Int("n", 10000, "tasks per round")
	rounds := flag.Int("rounds", 5, "measured rounds (after one warm-up round)")
	lang := flag.String("workers-lang", "c", "workers to start: c (tg.noop) or go (go.noop)")
	workers := flag.Int("workers", 2, "workers to start")
	nthreads := flag.Int("nthreads", 1, "threads per worker")
	address := flag.String("address", "", "use this running scheduler instead of starting one")
	fn := flag.String("func", "", "function to run (default: tg.noop for C workers, go.noop for Go workers)")
	flag.Parse()
	if err := run(*n, *rounds, *lang, *workers, *nthreads, *address, *fn); err != nil {
		fmt.Fprintln(os.Stderr, "taskgrid-noop-rate:", err)
		os.Exit(1)
	}
}

func run(n, rounds int, lang string, workers, nthreads int, address, fn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if fn == "" {
		fn = map[string]string{"c": "tg.noop", "go": "go.noop"}[lang]
		if fn == "" {
			return fmt.Errorf("-workers-lang must be c or go, got %q", lang)
		}
	}
	if address == "" {
		bins, err := cluster.FindBinaries()
		if err != nil {
			return err
		}
		workerBin := bins.Worker
		if lang == "go" {
			dir, err := os.MkdirTemp("", "taskgrid-noop-rate-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			if workerBin, err = cluster.BuildGoWorker(ctx, dir); err != nil {
				return err
			}
		}
		sched, addr, err := cluster.StartScheduler(ctx, bins,
			"--workers", strconv.Itoa(workers), "--nthreads", strconv.Itoa(nthreads),
			"--worker-bin", workerBin, "--worker-log-level", "warn")
		if err != nil {
			return err
		}
		defer sched.Stop(10 * time.Second)
		address = addr
	}
	c, err := taskgrid.Dial(ctx, address)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	if err := waitForWorkers(ctx, c, workers); err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("%d x %s from Go, %d workers (%s, %d threads each), scheduler %s\n",
		n, fn, len(st.Workers), lang, nthreads, st.Version)

	tasks := make([]taskgrid.Task, n)
	var rates []float64
	for r := 0; r <= rounds; r++ {
		for i := range tasks {
			tasks[i] = taskgrid.Task{Func: fn}
		}
		start := time.Now()
		fs, err := c.SubmitMany(ctx, tasks)
		if err != nil {
			return err
		}
		if err := c.Gather(ctx, fs...); err != nil {
			return err
		}
		elapsed := time.Since(start)
		keys := make([]string, len(fs))
		for i, f := range fs {
			keys[i] = f.Key()
		}
		if _, err := c.Release(ctx, keys...); err != nil {
			return err
		}
		rate := float64(n) / elapsed.Seconds()
		if r == 0 {
			fmt.Printf("warm-up: %.0f tasks/s (%v)\n", rate, elapsed.Round(time.Millisecond))
			continue
		}
		rates = append(rates, rate)
		fmt.Printf("round %d: %.0f tasks/s (%v)\n", r, rate, elapsed.Round(time.Millisecond))
	}
	slices.Sort(rates)
	fmt.Printf("median: %.0f tasks/s\n", rates[len(rates)/2])
	return nil
}

// waitForWorkers waits until at least n workers are connected (unless a
// running scheduler was given: then any worker will do).
func waitForWorkers(ctx context.Context, c *taskgrid.Client, n int) error {
	for {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if len(st.Workers) >= max(n, 1) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d workers: %w", n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
