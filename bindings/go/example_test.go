// SPDX-License-Identifier: Apache-2.0

// The examples of README.md, compiled with the tests so they cannot rot.
// (They have no Output comments: they need a running cluster.)

package taskgrid_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os/signal"
	"syscall"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
)

func Example_client() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := taskgrid.Dial(ctx, "tcp://127.0.0.1:8786")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())

	// One task: a C built-in.
	f, err := c.Submit(ctx, taskgrid.Task{Func: "tg.inc", Input: []byte("41"), Codec: "json"})
	if err != nil {
		log.Fatal(err)
	}
	out, err := f.Result(ctx) // "42"
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))

	// A graph in one call: tasks name each other by key, in any order.
	fs, err := c.SubmitMany(ctx, []taskgrid.Task{
		{Key: "total", Func: "tg.sum", Deps: []string{"a", "b"}},
		{Key: "a", Func: "tg.inc", Input: []byte("1"), Codec: "json"},
		{Key: "b", Func: "go.double", Input: []byte("5"), Codec: "json", Priority: 10},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Gather(ctx, fs...); err != nil { // one stream for all
		var te *taskgrid.TaskError
		if errors.As(err, &te) {
			log.Fatalf("%s failed: %s: %s\n%s", te.Key, te.Type, te.Message, te.Traceback)
		}
		log.Fatal(err)
	}
	var total float64
	if err := fs[0].Decode(ctx, &total); err != nil { // JSON results
		log.Fatal(err)
	}
	fmt.Println(total) // 12
}

func Example_worker() {
	w := taskgrid.NewWorker("tcp://127.0.0.1:8786",
		taskgrid.WithNThreads(4), taskgrid.WithResources(map[string]float64{"GPU": 1}))

	// A plain function: bytes in, bytes out.
	err := w.Register("go.upper", func(ctx context.Context, in []byte, deps [][]byte) ([]byte, error) {
		return bytes.ToUpper(in), nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// The JSON convention of the C built-ins, so tg.inc can feed it.
	err = w.Register("go.double", taskgrid.JSONFunc(func(ctx context.Context, args []json.RawMessage) (any, error) {
		var x float64
		if err := json.Unmarshal(args[0], &x); err != nil {
			return nil, &taskgrid.TaskError{Type: "TypeError", Message: err.Error()}
		}
		return 2 * x, nil
	}))
	if err != nil {
		log.Fatal(err)
	}

	// Runs until SIGTERM: then queued work goes back to the scheduler and
	// running work gets 10 s to finish.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

func ExampleClientFromContext() {
	// A task that fans out nested tasks and waits for them; while it
	// waits, its slot runs other tasks.
	sumSquares := taskgrid.JSONFunc(func(ctx context.Context, args []json.RawMessage) (any, error) {
		var n int
		if err := json.Unmarshal(args[0], &n); err != nil {
			return nil, err
		}
		c, err := taskgrid.ClientFromContext(ctx)
		if err != nil {
			return nil, err
		}
		tasks := make([]taskgrid.Task, n)
		for i := range tasks {
			tasks[i] = taskgrid.Task{Func: "go.square", Input: []byte(fmt.Sprint(i + 1)), Codec: "json"}
		}
		fs, err := c.SubmitMany(ctx, tasks)
		if err != nil {
			return nil, err
		}
		if err := c.Gather(ctx, fs...); err != nil {
			return nil, err
		}
		var sum float64
		for _, f := range fs {
			var x float64
			if err := f.Decode(ctx, &x); err != nil {
				return nil, err
			}
			sum += x
		}
		return sum, nil
	})
	w := taskgrid.NewWorker("tcp://127.0.0.1:8786")
	_ = w.Register("go.sumsquares", sumSquares)
}
