// SPDX-License-Identifier: Apache-2.0

// install_test.go: `go install` of this command from outside the module
// tree, the ways the README documents, and the installed program serving
// a scheduler. Offline: GOPROXY=off, everything from the module cache.
// (The `@version` form needs the module proxy and a tag, so it is the
// one form not run here; the consumer-module form installs the same
// import path.)

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/modroot"
	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

const cmdPath = modroot.Path + "/cmd/taskgrid-go-worker"

// goInstall runs `go args...` in dir with GOBIN set to a new directory,
// offline, and returns the installed program.
func goInstall(t *testing.T, dir string, args ...string) string {
	t.Helper()
	gobin := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOPROXY=off", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	bin := filepath.Join(gobin, "taskgrid-go-worker")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("go %s installed nothing: %v", strings.Join(args, " "), err)
	}
	return bin
}

func TestGoInstallFromOutsideTheModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the worker twice")
	}
	root, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()

	// 1. From a checkout: `go -C <checkout>/bindings/go install ./cmd/taskgrid-go-worker`.
	fromCheckout := goInstall(t, outside, "-C", root, "install", "./cmd/taskgrid-go-worker")

	// 2. By import path, from another module that requires this one (here
	// replaced by the checkout, as a vendored or forked copy would be).
	consumer := filepath.Join(outside, "consumer")
	if err := os.MkdirAll(consumer, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/consumer\n\ngo 1.26.0\n\nrequire " + modroot.Path + " v0.0.0\n\nreplace " +
		modroot.Path + " => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(consumer, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(consumer, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	byPath := goInstall(t, consumer, "install", cmdPath)

	// Each installed program serves a scheduler that launches it.
	for _, bin := range []string{fromCheckout, byPath} {
		addr := tgtest.Scheduler(t, "--workers", "1", "--worker-bin", bin, "--nthreads", "1")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := taskgrid.Dial(ctx, addr)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		f, err := c.Submit(ctx, taskgrid.Task{Func: "go.double", Input: []byte("21"), Codec: "json"})
		var got float64
		if err == nil {
			err = f.Decode(ctx, &got)
		}
		if err != nil || got != 42 {
			t.Errorf("%s: go.double(21) = %v, %v", bin, got, err)
		}
		_ = c.Close(ctx)
		cancel()
	}
}
