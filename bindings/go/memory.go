// SPDX-License-Identifier: Apache-2.0

// memory.go: the worker's memory manager, after Dask's
// distributed.worker.memory.{target,pause,terminate}, with the options,
// defaults and messages of the C and Python workers (taskgrid-worker
// --memory-limit, --memory-target, --memory-pause, --memory-terminate,
// --spill-dir).
//
// It watches the bytes of held results in memory (the store's, store.go),
// not the process RSS: the RSS also counts the Go runtime, gRPC and the
// transient buffers of tasks, and freed memory goes back to the system
// late (after a garbage collection and the scavenger), so a small limit
// would pause or stop a worker for memory it does not manage, and a pause
// might never clear. The RSS (/proc/self/statm, else the Go runtime's own
// count from runtime/metrics) is reported beside it, for information.
//
// Beyond the target fraction of the limit it spills the least recently
// used results to files in the spill directory; beyond the pause fraction
// the worker reports itself paused (the scheduler assigns it nothing new);
// beyond the terminate fraction (spilling could not keep up: the disk
// failed, or spilling is off) the worker stops at once, as if its process
// died, and Run returns an error matching ErrMemoryTerminate (the example
// command then exits with status 3). One goroutine, woken by every change
// of the store and every tick (for the RSS in reports).
//
// The process-wide Go runtime is left alone: a library should not set the
// garbage collector's soft limit (debug.SetMemoryLimit) of the program it
// runs in. cmd/taskgrid-go-worker, a process of its own, sets it.

package taskgrid

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// Defaults of the memory fractions (Dask's).
const (
	DefaultMemoryTarget    = 0.6
	DefaultMemoryPause     = 0.8
	DefaultMemoryTerminate = 0.95
)

// Special values of WithMemoryLimit.
const (
	// MemoryAuto: this machine's memory, or its cgroup's limit if lower
	// (TotalMemory); the default.
	MemoryAuto int64 = -1
	// MemoryNone: no limit (nothing spills, the worker never pauses).
	MemoryNone int64 = 0
)

// ErrMemoryTerminate matches the error Run returns when the held results
// in memory went over the terminate fraction of the memory limit.
var ErrMemoryTerminate = errors.New("taskgrid: worker: held results over the memory terminate fraction")

const (
	memoryTick = 500 * time.Millisecond
	rssMaxAge  = 100 * time.Millisecond
)

// memoryOptions are the worker's memory options; nil: the default.
type memoryOptions struct {
	limit                    *int64
	target, pause, terminate *float64
	spillDir                 string
}

// WithMemoryLimit sets the bytes of held results the worker keeps in
// memory (taskgrid-worker --memory-limit): MemoryAuto (the default) is
// this machine's memory, or its cgroup's limit if lower; MemoryNone (0):
// no limit. ParseMemoryLimit reads "4GiB", "500MB", "auto" or "none".
// Worker only.
func WithMemoryLimit(bytes int64) Option {
	return func(c *config) { c.memory.limit = &bytes }
}

// WithMemoryTarget sets the fraction of the memory limit beyond which the
// least recently used held results spill to files in the spill directory
// (default 0.6; 0: never spill). Spilled results are read back from their
// files for a Fetch, an upload or a task on this worker. Worker only.
func WithMemoryTarget(f float64) Option { return func(c *config) { c.memory.target = &f } }

// WithMemoryPause sets the fraction of the memory limit beyond which the
// worker reports itself paused: the scheduler assigns it no new task until
// freed results bring it back under (default 0.8; 0: never). Worker only.
func WithMemoryPause(f float64) Option { return func(c *config) { c.memory.pause = &f } }

// WithMemoryTerminate sets the fraction of the memory limit beyond which
// the worker stops at once, as if its process died (default 0.95; 0:
// never); Run then returns an error matching ErrMemoryTerminate. Spilling
// keeps the worker under it unless the disk fails or spilling is off.
// Worker only.
func WithMemoryTerminate(f float64) Option { return func(c *config) { c.memory.terminate = &f } }

// WithSpillDir sets where spilled results go (created if missing, and
// kept). Default: a private temporary directory, made at the first spill
// and removed when Run returns. Worker only.
func WithSpillDir(dir string) Option { return func(c *config) { c.memory.spillDir = dir } }

var limitRE = regexp.MustCompile(`^([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)$`)

var units = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "kib": 1 << 10,
	"m": 1e6, "mb": 1e6, "mib": 1 << 20,
	"g": 1e9, "gb": 1e9, "gib": 1 << 30,
	"t": 1e12, "tb": 1e12, "tib": 1 << 40,
}

// ParseMemoryLimit reads a memory limit as taskgrid-worker --memory-limit
// does: bytes with an optional unit ("4GiB", "500MB", "1.5kib", "1e9";
// case-insensitive, "k", "M", "G" alone decimal), "auto" (TotalMemory) or
// "none" (MemoryNone).
func ParseMemoryLimit(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch t {
	case "none", "0":
		return MemoryNone, nil
	case "auto":
		return int64(min(TotalMemory(), math.MaxInt64)), nil
	}
	g := limitRE.FindStringSubmatch(t)
	var mult float64
	ok := g != nil
	if ok {
		mult, ok = units[g[2]]
	}
	var n float64
	if ok {
		n, _ = strconv.ParseFloat(g[1], 64)
	}
	if !ok || n*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("memory limit must be bytes (e.g. 4GiB, 500MB, 1000000), 'auto' or 'none', got %q", s)
	}
	return int64(n * mult), nil
}

// ParseMemoryFraction reads a fraction of the memory limit as
// taskgrid-worker --memory-target, --memory-pause and --memory-terminate
// do: a number from 0 to 1, or "none" (0: that step is off).
func ParseMemoryFraction(s string) (float64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "none" || t == "false" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || !(f >= 0 && f <= 1) {
		return 0, fmt.Errorf("must be a fraction from 0 to 1 (of the memory limit) or 'none', got %q", s)
	}
	return f, nil
}

// TotalMemory is this machine's memory in bytes, or its cgroup's memory
// limit if lower; 0 when unknown.
func TotalMemory() uint64 {
	var total uint64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				total = kb << 10
			}
		}
	}
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if cg, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && cg > 0 && (total == 0 || cg < total) {
			total = cg
		}
		break
	}
	return total
}

// processRSS is the process's resident set size: /proc/self/statm, else
// the memory the Go runtime holds from the system (runtime/metrics); 0
// when unknown.
func processRSS() uint64 {
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 2 {
			if pages, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				return pages * uint64(os.Getpagesize())
			}
		}
	}
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64() - s[1].Value.Uint64()
}

// memoryTerminated is the error of a worker stopped for memory.
type memoryTerminated struct{ msg string }

func (e *memoryTerminated) Error() string        { return e.msg }
func (e *memoryTerminated) Is(target error) bool { return target == ErrMemoryTerminate }

// memoryManager spills, pauses and terminates by the bytes in memory of
// the data plane's current store. A nil manager (no data service) does
// nothing and reports nothing.
type memoryManager struct {
	limit                    uint64 // 0: none
	target, pause, terminate float64
	p                        *dataPlane
	log                      *slog.Logger

	dirMu   sync.Mutex
	dir     string // the spill directory; "" until the private one is made
	ownDir  bool   // dir is private: removed by close
	dirBase string // where the private one is made

	wake, stop, done chan struct{}
	closeOnce        sync.Once

	checkMu  sync.Mutex // one check at a time; guards the fields below
	reported [2]uint64  // bytes in memory and spilled when a report was last asked for
	warned   bool
	seq      uint64

	paused  atomic.Bool
	due     atomic.Bool // a report should go out now
	term    chan struct{}
	termErr error // set before term is closed
	rssAt   atomic.Int64
	rssVal  atomic.Uint64
}

// newMemoryManager checks the options and makes the manager of p (a
// given spill directory is created now); start runs it.
func newMemoryManager(o memoryOptions, p *dataPlane, log *slog.Logger) (*memoryManager, error) {
	m := &memoryManager{
		target: DefaultMemoryTarget, pause: DefaultMemoryPause, terminate: DefaultMemoryTerminate,
		p: p, log: log, term: make(chan struct{}), dirBase: os.TempDir(),
	}
	limit := MemoryAuto
	if o.limit != nil {
		limit = *o.limit
	}
	switch {
	case limit == MemoryAuto:
		m.limit = TotalMemory()
	case limit < 0:
		return nil, fmt.Errorf("taskgrid: worker: memory limit %d: must be bytes, MemoryAuto or MemoryNone", limit)
	default:
		m.limit = uint64(limit)
	}
	for _, f := range []struct {
		name string
		v    *float64
		dst  *float64
	}{{"target", o.target, &m.target}, {"pause", o.pause, &m.pause}, {"terminate", o.terminate, &m.terminate}} {
		if f.v == nil {
			continue
		}
		if !(*f.v >= 0 && *f.v <= 1) {
			return nil, fmt.Errorf("taskgrid: worker: memory %s must be a fraction from 0 to 1 (of the memory limit; 0: none), got %g", f.name, *f.v)
		}
		*f.dst = *f.v
	}
	if o.spillDir != "" {
		if err := os.MkdirAll(o.spillDir, 0o700); err != nil {
			return nil, fmt.Errorf("taskgrid: worker: spill directory: %w", err)
		}
		m.dir = o.spillDir
	}
	return m, nil
}

// start runs the manager (nothing to run without a limit).
func (m *memoryManager) start() {
	if m.limit == 0 {
		return
	}
	m.wake, m.stop, m.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go m.loop()
	where := m.dir
	if where == "" {
		where = "made at need under " + m.dirBase
	}
	m.log.Info(fmt.Sprintf("taskgrid: memory: limit %d bytes, target %.2f, pause %.2f, terminate %.2f, spill directory %s",
		m.limit, m.target, m.pause, m.terminate, where))
}

// close stops the goroutine and removes a private spill directory with
// what is left in it.
func (m *memoryManager) close() {
	if m == nil {
		return
	}
	m.closeOnce.Do(func() {
		if m.stop != nil {
			close(m.stop)
			<-m.done
		}
		m.dirMu.Lock()
		defer m.dirMu.Unlock()
		if m.ownDir {
			_ = os.RemoveAll(m.dir)
		}
	})
}

// poke asks for a check (the store changed).
func (m *memoryManager) poke() {
	if m == nil || m.wake == nil {
		return
	}
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *memoryManager) loop() {
	defer close(m.done)
	tick := time.NewTicker(memoryTick)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-m.wake:
		case <-tick.C:
		}
		m.check()
	}
}

func (m *memoryManager) share(frac float64) uint64 { return uint64(float64(m.limit) * frac) }

// spillDir is the directory to spill into, the private one made now if
// it is not yet.
func (m *memoryManager) spillDir() (string, error) {
	m.dirMu.Lock()
	defer m.dirMu.Unlock()
	if m.dir == "" {
		dir, err := os.MkdirTemp(m.dirBase, "taskgrid-spill-")
		if err != nil {
			return "", fmt.Errorf("cannot make a spill directory: %w", err)
		}
		m.dir, m.ownDir = dir, true
	}
	return m.dir, nil
}

// spill moves least recently used results of s to files until memory is
// within the target; it returns the bytes in memory when it stopped.
// checkMu held.
func (m *memoryManager) spill(s *store) uint64 {
	mem, _ := s.usage()
	if m.limit == 0 || m.target <= 0 {
		return mem
	}
	for mem > m.share(m.target) {
		key, id, data, ok := s.oldest()
		if !ok {
			break
		}
		dir, err := m.spillDir()
		var f *spillFile
		if err == nil {
			m.seq++
			f, err = writeSpill(filepath.Join(dir, fmt.Sprintf("spill-%d-%d", os.Getpid(), m.seq)), data)
		}
		if err != nil {
			if !m.warned {
				m.log.Warn(fmt.Sprintf("taskgrid: memory: cannot spill '%s' (%d bytes): %v", key, len(data), err))
				m.warned = true
			}
			break
		}
		m.warned = false
		if s.spilledTo(key, id, f) {
			m.log.Debug(fmt.Sprintf("taskgrid: memory: spilled '%s' (%d bytes)", key, len(data)))
		}
		mem, _ = s.usage()
	}
	return mem
}

// check spills, then compares with the terminate and pause fractions.
func (m *memoryManager) check() {
	m.checkMu.Lock()
	defer m.checkMu.Unlock()
	if m.termErr != nil {
		return
	}
	var mem, spilled uint64
	s := m.p.current()
	if s != nil {
		mem = m.spill(s)
		_, spilled = s.usage()
	}
	if m.limit > 0 && m.terminate > 0 && mem > m.share(m.terminate) {
		m.termErr = &memoryTerminated{fmt.Sprintf(
			"memory: held results use %d bytes in memory, over the terminate fraction %.2f of the memory limit %d bytes",
			mem, m.terminate, m.limit)}
		m.log.Error("taskgrid: " + m.termErr.Error() + "; stopping the worker")
		close(m.term)
		return
	}
	paused := m.limit > 0 && m.pause > 0 && mem > m.share(m.pause)
	if paused == m.paused.Load() {
		if m.reported == [2]uint64{mem, spilled} {
			return
		}
		// Spilled or changed: Status should see it now.
	} else if paused {
		m.log.Info(fmt.Sprintf("taskgrid: memory: paused (held results use %d bytes in memory, over the pause fraction %.2f of the memory limit %d bytes): the scheduler assigns no new task",
			mem, m.pause, m.limit))
	} else {
		m.log.Info(fmt.Sprintf("taskgrid: memory: unpaused (held results use %d bytes in memory)", mem))
	}
	m.reported = [2]uint64{mem, spilled}
	m.paused.Store(paused)
	m.due.Store(true)
	if s != nil && s.notify != nil {
		s.notify()
	}
}

// terminated is closed when the worker must stop for memory (never for a
// nil manager).
func (m *memoryManager) terminated() <-chan struct{} {
	if m == nil {
		return nil
	}
	return m.term
}

// err is the reason the worker stopped for memory, or nil.
func (m *memoryManager) err() error {
	if m == nil {
		return nil
	}
	select {
	case <-m.term:
		return m.termErr
	default:
		return nil
	}
}

// reportDue says, once, that a report should go out now.
func (m *memoryManager) reportDue() bool { return m != nil && m.due.Swap(false) }

// report is the memory report of store s.
func (m *memoryManager) report(s *store) *pb.MemoryReport {
	mem, spilled := s.usage()
	return &pb.MemoryReport{Memory: mem, Spilled: spilled, Limit: m.limit, Paused: m.paused.Load(), Rss: m.rss()}
}

// rss is the process RSS, read at most every rssMaxAge (reports go in
// every message).
func (m *memoryManager) rss() uint64 {
	now := time.Now().UnixNano()
	if now-m.rssAt.Load() < int64(rssMaxAge) {
		return m.rssVal.Load()
	}
	v := processRSS()
	m.rssVal.Store(v)
	m.rssAt.Store(now)
	return v
}

// tooLarge says why a result of size bytes cannot be held (it is larger
// than the limit plus the spill directory's free space), or "".
func (m *memoryManager) tooLarge(size uint64) string {
	if m == nil || m.limit == 0 || size <= m.limit {
		return ""
	}
	if m.target <= 0 {
		return fmt.Sprintf("the result is %d bytes, more than this worker can hold: its memory limit %d bytes (spilling is off)", size, m.limit)
	}
	m.dirMu.Lock()
	dir := m.dir
	m.dirMu.Unlock()
	if dir == "" {
		dir = m.dirBase
	}
	disk := freeSpace(dir)
	if size <= m.limit+disk {
		return ""
	}
	return fmt.Sprintf("the result is %d bytes, more than this worker can hold: its memory limit %d bytes plus %d bytes free for spilling in %s",
		size, m.limit, disk, dir)
}
