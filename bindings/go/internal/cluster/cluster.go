// SPDX-License-Identifier: Apache-2.0

// Package cluster starts the C scheduler and workers (and any other worker
// executable) as child processes on loopback, for the tests and the
// throughput benchmark of the Go binding. It finds the binaries through
// TASKGRID_BIN_DIR or the repository's bazel-bin, reads the address the
// scheduler prints, and stops processes with SIGTERM (then SIGKILL).
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/taskgrid/taskgrid/bindings/go/internal/modroot"
)

// Binaries are the C executables.
type Binaries struct {
	Scheduler string // .../scheduler/taskgrid-scheduler
	Worker    string // .../worker/taskgrid-worker
}

// ErrNoBinaries means the C binaries are not built.
var ErrNoBinaries = errors.New("taskgrid C binaries not found")

// FindBinaries looks in $TASKGRID_BIN_DIR (a directory with scheduler/ and
// worker/), else in the bazel-bin found by walking up from the working
// directory.
func FindBinaries() (Binaries, error) {
	dir := os.Getenv("TASKGRID_BIN_DIR")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return Binaries{}, err
		}
		for d := wd; ; d = filepath.Dir(d) {
			if isFile(filepath.Join(d, "bazel-bin", "scheduler", "taskgrid-scheduler")) {
				dir = filepath.Join(d, "bazel-bin")
				break
			}
			if filepath.Dir(d) == d {
				return Binaries{}, fmt.Errorf("%w: no bazel-bin above %s and TASKGRID_BIN_DIR unset; build them with `bazel build //scheduler //worker` at the repository root", ErrNoBinaries, wd)
			}
		}
	}
	b := Binaries{
		Scheduler: filepath.Join(dir, "scheduler", "taskgrid-scheduler"),
		Worker:    filepath.Join(dir, "worker", "taskgrid-worker"),
	}
	for _, p := range []string{b.Scheduler, b.Worker} {
		if !isFile(p) {
			return Binaries{}, fmt.Errorf("%w: %s is missing; build it with `bazel build //scheduler //worker`", ErrNoBinaries, p)
		}
	}
	return b, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// Process is a child process whose output is kept for diagnostics.
type Process struct {
	Name string
	cmd  *exec.Cmd
	log  *SyncBuffer
	done chan struct{}
	err  error // after done
}

// Start runs bin with args; stdout and stderr go to the process log (and
// stdout lines also to lines, if not nil, until it is full).
func Start(name, bin string, env []string, args ...string) (*Process, error) {
	return start(name, bin, env, nil, args...)
}

func start(name, bin string, env []string, lines chan<- string, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	p := &Process{Name: name, cmd: cmd, log: &SyncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.log, line)
			if lines != nil {
				select {
				case lines <- line:
				default:
				}
			}
		}
		_, _ = io.Copy(p.log, stdout)
	}()
	go func() {
		<-copied
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the exit status once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Log is what the process printed so far.
func (p *Process) Log() string { return p.log.String() }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits up to timeout, then kills the process. It
// returns the exit status (nil after a clean exit).
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.err
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v after SIGTERM: killed", p.Name, timeout)
	}
}

// StartScheduler starts taskgrid-scheduler with args (default: on a free
// loopback port, logging warnings) and returns it with the address it
// printed.
func StartScheduler(ctx context.Context, b Binaries, args ...string) (*Process, string, error) {
	lines := make(chan string, 16)
	var all []string
	if !slices.Contains(args, "--listen") {
		all = append(all, "--listen", "tcp://127.0.0.1:0")
	}
	if !slices.Contains(args, "--log-level") {
		all = append(all, "--log-level", "warn")
	}
	all = append(all, args...)
	p, err := start("taskgrid-scheduler", b.Scheduler, nil, lines, all...)
	if err != nil {
		return nil, "", err
	}
	const prefix = "taskgrid-scheduler listening on "
	for {
		select {
		case line := <-lines:
			if addr, ok := strings.CutPrefix(line, prefix); ok {
				return p, strings.TrimSpace(addr), nil
			}
		case <-p.done:
			return nil, "", fmt.Errorf("taskgrid-scheduler exited before listening (%v):\n%s", p.err, p.Log())
		case <-ctx.Done():
			_ = p.Stop(time.Second)
			return nil, "", fmt.Errorf("taskgrid-scheduler did not print its address: %w\n%s", ctx.Err(), p.Log())
		}
	}
}

// BuildGoWorker builds the example Go worker (cmd/taskgrid-go-worker of
// this module) into dir and returns the executable's path.
func BuildGoWorker(ctx context.Context, dir string) (string, error) {
	root, err := modroot.Find()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "taskgrid-go-worker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/taskgrid-go-worker")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/taskgrid-go-worker: %w\n%s", err, b)
	}
	return out, nil
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers
// (a process's output, a logger's writes).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
