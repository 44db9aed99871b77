// SPDX-License-Identifier: Apache-2.0

// Command taskgrid-go-worker is an example Go worker. It takes the command
// line of the C taskgrid-worker, so the scheduler's local launcher can
// start it (taskgrid-scheduler --worker-bin taskgrid-go-worker ...):
//
//	taskgrid-go-worker ADDRESS [--nthreads N] [--name NAME]
//	                   [--resources K=V,...] [--log-level LEVEL]
//	                   [--tls-ca FILE --tls-cert FILE --tls-key FILE]
//	                   [--data-listen HOST:PORT|none] [--data-address HOST:PORT]
//	                   [--data-clients]
//	                   [--memory-limit BYTES|auto|none] [--memory-target F]
//	                   [--memory-pause F] [--memory-terminate F] [--spill-dir DIR]
//
// and provides these functions:
//
//	go.noop          empty result (codec raw): the throughput benchmark
//	go.echo          its input, with the input's codec
//	go.double(x)     2*x (JSON, the C built-ins' convention: tg.inc feeds it)
//	go.sum(...)      the sum of its JSON arguments
//	go.sleep(s)      sleeps s seconds, returns s; stops early when cancelled
//	go.fail(msg)     fails with error type "go.Fail"
//	go.square(x)     x*x
//	go.sumsquares(n) 1²+...+n² by nested tasks through the worker-side client
//
// SIGTERM or SIGINT stops it cleanly (queued work goes back to the
// scheduler; running work gets 10 s); a second signal exits at once. Exit
// codes: 0 after a clean stop or drain, 2 for a usage error, 3 when held
// results went over the memory terminate fraction (the launcher restarts
// it), 1 otherwise.
//
// Unless GOMEMLIMIT is set, the Go runtime's soft memory limit
// (debug.SetMemoryLimit) is the memory limit plus 64 MiB for the runtime
// and the buffers of running tasks: the garbage collector then returns the
// memory of spilled and freed results before the process grows past that,
// rather than only once the heap has doubled.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("taskgrid-go-worker", flag.ContinueOnError)
	nthreads := fs.Int("nthreads", 0, "tasks run at once (default: GOMAXPROCS)")
	name := fs.String("name", "", "worker name (default: HOST-PID)")
	resources := fs.String("resources", "", "resource capacities, e.g. GPU=1,MEM=4e9")
	logLevel := fs.String("log-level", "info", "error, warn, info or debug")
	ca := fs.String("tls-ca", "", "cluster CA (PEM file), for a tls:// address")
	cert := fs.String("tls-cert", "", "this worker's certificate (PEM file)")
	key := fs.String("tls-key", "", "this worker's private key (PEM file)")
	dataListen := fs.String("data-listen", "", "where the data service listens, HOST:PORT, or none for no data service\n(default: 127.0.0.1:0 for a loopback scheduler address, else 0.0.0.0:0)")
	dataAddress := fs.String("data-address", "", "the data service's address advertised to the cluster, HOST:PORT\n(default: the listen host with the bound port; for 0.0.0.0 or ::, this host's IP address\non the route to the scheduler, or its name when there is none)")
	dataClients := fs.Bool("data-clients", false, "over TLS, let client certificates fetch held results from the data service too\n(clients fetching directly); default: worker certificates only")
	memLimit := fs.String("memory-limit", "auto", "memory for held results, e.g. 4GiB or 500MB\n(auto: this machine's memory, or its cgroup's limit; none: no limit)")
	memTarget := fs.String("memory-target", "0.6", "spill the least recently used held results to disk beyond this fraction of the limit (none: never spill)")
	memPause := fs.String("memory-pause", "0.8", "beyond this fraction take no new tasks until results are freed (none: never)")
	memTerminate := fs.String("memory-terminate", "0.95", "beyond this fraction stop and exit with status 3 (none: never)")
	spillDir := fs.String("spill-dir", "", "where spilled results go (default: a private temporary directory, removed at exit)")
	deathTimeout := fs.Float64("death-timeout", 0, "exit (status 1) once the scheduler has been out of reach for this many seconds,\nat start or after losing it (0: keep trying)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: taskgrid-go-worker ADDRESS [options]")
		fs.PrintDefaults()
	}
	// The address may come before or after the options.
	var address string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		address, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if address == "" && fs.NArg() > 0 {
		address = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	if address == "" {
		return usage("missing the scheduler ADDRESS (tcp://HOST:PORT)")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usage("--log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	res, err := parseResources(*resources)
	if err != nil {
		return usage("--resources: %v", err)
	}
	mem, limit, err := memoryOptions(*memLimit, *memTarget, *memPause, *memTerminate, *spillDir)
	if err != nil {
		return usage("%v", err)
	}
	opts := append([]taskgrid.Option{
		taskgrid.WithNThreads(*nthreads), taskgrid.WithName(*name),
		taskgrid.WithResources(res), taskgrid.WithLogger(logger),
		taskgrid.WithDataListen(*dataListen), taskgrid.WithDataAddress(*dataAddress),
		taskgrid.WithDataClients(*dataClients),
	}, mem...)
	if *deathTimeout < 0 {
		return usage("--death-timeout: %g is not 0 or more seconds", *deathTimeout)
	}
	opts = append(opts, taskgrid.WithDeathTimeout(time.Duration(*deathTimeout*float64(time.Second))))
	if *ca != "" || *cert != "" || *key != "" {
		opts = append(opts, taskgrid.WithSecurity(&taskgrid.Security{CAFile: *ca, CertFile: *cert, KeyFile: *key}))
	}

	w := taskgrid.NewWorker(address, opts...)
	if err := register(w); err != nil {
		logger.Error(err.Error())
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	finished := make(chan struct{})
	defer close(finished) // runs before stop: the watcher below quits
	go func() {
		// First signal: stop cleanly (ctx). Second: the user means it.
		select {
		case <-ctx.Done():
		case <-finished:
			return
		}
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGTERM, syscall.SIGINT)
		defer signal.Stop(again)
		select {
		case <-again:
			fmt.Fprintln(os.Stderr, "taskgrid-go-worker: second signal, exiting now")
			os.Exit(1)
		case <-finished:
		}
	}()
	setSoftMemoryLimit(limit)
	if err := w.Run(ctx); err != nil {
		if errors.Is(err, taskgrid.ErrMemoryTerminate) {
			logger.Error(fmt.Sprintf("%v; exiting with status %d", err, exitMemory))
			return exitMemory
		}
		if errors.Is(err, taskgrid.ErrSchedulerGone) {
			logger.Error(err.Error() + " (--death-timeout); exiting")
			return 1
		}
		logger.Error(err.Error())
		return 2
	}
	return 0
}

// exitMemory is the exit status after going over the memory terminate
// fraction (the C worker's).
const exitMemory = 3

// runtimeHeadroom is what the Go runtime's soft memory limit allows beyond
// the memory limit of held results.
const runtimeHeadroom = 64 << 20

// memoryOptions reads the memory flags into worker options; bytes is the
// memory limit (0: none).
func memoryOptions(limit, target, pause, terminate, spillDir string) (opts []taskgrid.Option, bytes int64, err error) {
	n, err := taskgrid.ParseMemoryLimit(limit)
	if err != nil {
		return nil, 0, fmt.Errorf("--memory-limit: %w", err)
	}
	opts = []taskgrid.Option{taskgrid.WithMemoryLimit(n), taskgrid.WithSpillDir(spillDir)}
	for _, f := range []struct {
		flag, value string
		opt         func(float64) taskgrid.Option
	}{
		{"--memory-target", target, taskgrid.WithMemoryTarget},
		{"--memory-pause", pause, taskgrid.WithMemoryPause},
		{"--memory-terminate", terminate, taskgrid.WithMemoryTerminate},
	} {
		v, err := taskgrid.ParseMemoryFraction(f.value)
		if err != nil {
			return nil, 0, fmt.Errorf("%s %w", f.flag, err)
		}
		opts = append(opts, f.opt(v))
	}
	return opts, n, nil
}

// setSoftMemoryLimit sets the Go runtime's soft memory limit to the memory
// limit plus runtimeHeadroom, unless GOMEMLIMIT is set or there is no
// limit.
func setSoftMemoryLimit(limit int64) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && limit > 0 && limit < math.MaxInt64-runtimeHeadroom {
		debug.SetMemoryLimit(limit + runtimeHeadroom)
	}
}

func usage(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "taskgrid-go-worker: error: "+format+"\n", a...)
	fmt.Fprintln(os.Stderr, "Try 'taskgrid-go-worker --help'.")
	return 2
}

// parseResources reads "GPU=1,MEM=4e9".
func parseResources(s string) (map[string]float64, error) {
	if s == "" {
		return nil, nil
	}
	m := map[string]float64{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not NAME=AMOUNT (e.g. GPU=2)", kv)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return nil, fmt.Errorf("amount of %q must be a non-negative number", k)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("%q is given twice", k)
		}
		m[k] = f
	}
	return m, nil
}

func register(w *taskgrid.Worker) error {
	return errors.Join(
		w.Register("go.noop", func(context.Context, []byte, [][]byte) ([]byte, error) {
			return nil, nil
		}),
		w.Register("go.echo", func(ctx context.Context, in []byte, _ [][]byte) ([]byte, error) {
			info, _ := taskgrid.TaskInfoFromContext(ctx)
			taskgrid.SetResultCodec(ctx, info.Codec)
			return in, nil
		}),
		w.Register("go.double", taskgrid.JSONFunc(func(_ context.Context, args []json.RawMessage) (any, error) {
			xs, err := numbers(args)
			if err != nil || len(xs) != 1 {
				return nil, &taskgrid.TaskError{Type: "TypeError", Message: "go.double takes one number"}
			}
			return 2 * xs[0], nil
		})),
		w.Register("go.sum", taskgrid.JSONFunc(func(_ context.Context, args []json.RawMessage) (any, error) {
			xs, err := numbers(args)
			if err != nil {
				return nil, err
			}
			var s float64
			for _, x := range xs {
				s += x
			}
			return s, nil
		})),
		w.Register("go.sleep", taskgrid.JSONFunc(func(ctx context.Context, args []json.RawMessage) (any, error) {
			xs, err := numbers(args)
			if err != nil || len(xs) != 1 {
				return nil, &taskgrid.TaskError{Type: "TypeError", Message: "go.sleep takes seconds"}
			}
			select {
			case <-time.After(time.Duration(xs[0] * float64(time.Second))):
				return xs[0], nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})),
		w.Register("go.fail", taskgrid.JSONFunc(func(_ context.Context, args []json.RawMessage) (any, error) {
			msg := "failed on purpose"
			if len(args) > 0 {
				_ = json.Unmarshal(args[0], &msg)
			}
			return nil, &taskgrid.TaskError{Type: "go.Fail", Message: msg}
		})),
		w.Register("go.square", taskgrid.JSONFunc(func(_ context.Context, args []json.RawMessage) (any, error) {
			xs, err := numbers(args)
			if err != nil || len(xs) != 1 {
				return nil, &taskgrid.TaskError{Type: "TypeError", Message: "go.square takes one number"}
			}
			return xs[0] * xs[0], nil
		})),
		w.Register("go.sumsquares", taskgrid.JSONFunc(sumSquares)),
	)
}

// sumSquares computes 1² + ... + n² by nested tasks: it submits n
// go.square tasks and a go.sum of their results through the worker-side
// client, and waits for the sum. Waiting lends the task's slot to other
// tasks, so it works on a single-slot worker.
func sumSquares(ctx context.Context, args []json.RawMessage) (any, error) {
	var n int
	if len(args) != 1 || json.Unmarshal(args[0], &n) != nil || n < 0 {
		return nil, &taskgrid.TaskError{Type: "TypeError", Message: "go.sumsquares takes a non-negative integer"}
	}
	c, err := taskgrid.ClientFromContext(ctx)
	if err != nil {
		return nil, err
	}
	tasks := make([]taskgrid.Task, 0, n+1)
	keys := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		key := taskgrid.NewKey("go.square")
		tasks = append(tasks, taskgrid.Task{Key: key, Func: "go.square", Input: []byte(strconv.Itoa(i)), Codec: "json"})
		keys = append(keys, key)
	}
	tasks = append(tasks, taskgrid.Task{Func: "go.sum", Deps: keys})
	fs, err := c.SubmitMany(ctx, tasks)
	if err != nil {
		return nil, err
	}
	var sum float64
	if err := fs[n].Decode(ctx, &sum); err != nil {
		return nil, err
	}
	return sum, nil
}

// numbers decodes every argument as a number.
func numbers(args []json.RawMessage) ([]float64, error) {
	xs := make([]float64, len(args))
	for i, a := range args {
		if err := json.Unmarshal(a, &xs[i]); err != nil {
			return nil, &taskgrid.TaskError{Type: "TypeError", Message: fmt.Sprintf("argument %d is not a number: %s", i+1, a)}
		}
	}
	return xs, nil
}
