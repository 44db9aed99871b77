// SPDX-License-Identifier: Apache-2.0

// worker.go: the Go worker: registered functions, and the session with the
// scheduler over one WorkerLink.Connect stream, with the same semantics as
// the C worker (worker/link.c): register, run assignments on the executor,
// send every finished result waiting in one WorkerMessage, heartbeat when
// idle, cancel on request, hand back unstarted work when stopping or
// draining, and reconnect with backoff when the stream breaks.
//
// Goroutines per session: the caller of Run owns the session (it handles
// messages, stop and drain); one goroutine receives, one sends (gRPC allows
// one sender at a time); tasks run on their own goroutines.
//
// A session does not outlive its stream: when it breaks, the scheduler has
// already given this worker's tasks to others, so queued tasks are dropped,
// running ones are cancelled and unsent results are discarded, and the
// results it held (store.go) are dropped.

package taskgrid

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"google.golang.org/grpc"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// Func is a task function. in is the task's input; deps are the results of
// its dependencies, in order (TaskInfoFromContext gives their codecs). ctx
// is cancelled when the task is cancelled or the worker gives it up. A
// returned error fails the task: a *TaskError sets the type other
// languages see, anything else is type "go.Error"; a panic fails it with
// type "go.Panic" and the stack as traceback. The result's codec is "raw"
// unless the function calls SetResultCodec.
type Func func(ctx context.Context, in []byte, deps [][]byte) ([]byte, error)

// Worker runs registered Go functions for a scheduler.
type Worker struct {
	address string
	cfg     config

	mu      sync.Mutex
	funcs   map[string]Func
	started bool
	name    string // as registered by the scheduler

	// Set by Run.
	conn  *grpc.ClientConn
	exec  *executor
	start time.Time
	data  *dataPlane // set under mu
}

const (
	agent = "taskgrid-go/0.1 (Go)"
	// Batch caps of one WorkerMessage: well under the protocol's limits,
	// large enough to amortise a message's fixed cost.
	sendMaxItems = 4096
	sendMaxBytes = 4 << 20
	// messageHeadroom: room for a message's other fields; a result larger
	// than the message limit less this fails with tg.ResultTooLarge.
	messageHeadroom = 64 << 10
	// registerTimeout bounds waiting for the scheduler's answer to the
	// registration.
	registerTimeout = 5 * time.Second
	flushTimeout    = 5 * time.Second
	backoffMin      = 100 * time.Millisecond
	backoffMax      = 2 * time.Second
	warnEvery       = 5 * time.Second
)

// NewWorker makes a worker for the scheduler at address ("tcp://host:port",
// or "tls://host:port" with WithSecurity). Register functions, then Run it.
func NewWorker(address string, opts ...Option) *Worker {
	return &Worker{address: address, cfg: newConfig(opts), funcs: make(map[string]Func)}
}

// Register provides fn under name ("namespace.name", e.g. "go.resize";
// a '.' between a non-empty namespace and name, no white space). Register
// before Run; names are unique. Run adds the built-in ScatterFunc
// ("tg.echo", see Client.Scatter) unless a function of that name is
// registered.
func (w *Worker) Register(name string, fn Func) error {
	if err := checkFuncName(name); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("taskgrid: register %q: nil function", name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return fmt.Errorf("taskgrid: register %q: the worker is already running", name)
	}
	if _, dup := w.funcs[name]; dup {
		return fmt.Errorf("taskgrid: register %q: already registered", name)
	}
	w.funcs[name] = fn
	return nil
}

func checkFuncName(name string) error {
	i := strings.IndexByte(name, '.')
	if i <= 0 || i == len(name)-1 || strings.IndexFunc(name, unicode.IsSpace) >= 0 {
		return fmt.Errorf("taskgrid: function name %q is not \"namespace.name\"", name)
	}
	return nil
}

// Name is the name the scheduler registered the worker under ("" before the
// first registration).
func (w *Worker) Name() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.name
}

// Run serves the scheduler until ctx is cancelled or the scheduler drains
// the worker, reconnecting with backoff (forever) while it is unreachable.
// On cancellation, queued tasks go back to the scheduler and running ones
// get WithStopGrace to finish (their results are sent) before they are
// cancelled. It returns nil after such a clean stop, an error matching
// ErrSchedulerGone when WithDeathTimeout passed without a scheduler, and
// otherwise an error only when it cannot start (no functions, a bad
// address or security options, Run called twice).
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("taskgrid: worker: Run called twice")
	}
	w.started = true
	nfuncs := len(w.funcs)
	if _, ok := w.funcs[ScatterFunc]; !ok && nfuncs > 0 {
		w.funcs[ScatterFunc] = echo
	}
	w.mu.Unlock()
	if nfuncs == 0 {
		return errors.New("taskgrid: worker: no function registered")
	}
	if w.cfg.nthreads <= 0 {
		w.cfg.nthreads = runtime.GOMAXPROCS(0)
	}
	if w.cfg.name == "" {
		host, _ := os.Hostname()
		w.cfg.name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	for name, amount := range w.cfg.resources {
		if amount < 0 {
			return fmt.Errorf("taskgrid: worker: resource %q: negative capacity %g", name, amount)
		}
	}
	conn, err := dialConn(w.address, w.cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	data, err := newDataPlane(w)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.data = data
	w.mu.Unlock()
	if data.addr != "" {
		w.cfg.logger.Info("taskgrid: data service listening", "address", data.addr, "tls", data.useTLS)
	}
	gone := w.serve(ctx, conn)
	data.close()
	data.logStats(w.cfg.logger)
	if gone != nil {
		return gone
	}
	return data.mem.err()
}

// ErrSchedulerGone matches the error Run returns when no scheduler was
// reached for the WithDeathTimeout duration.
var ErrSchedulerGone = errors.New("taskgrid: worker: no scheduler within the death timeout")

// serve runs sessions on conn until ctx ends, the worker is drained or
// the death timeout passes without a scheduler (then it returns an error
// matching ErrSchedulerGone): Run's loop.
func (w *Worker) serve(ctx context.Context, conn *grpc.ClientConn) error {
	w.conn = conn
	w.exec = newExecutor(w.cfg.nthreads, w.execute)
	w.exec.onSecede, w.exec.onRejoin = w.onSecede, w.onRejoin
	w.start = time.Now()
	log := w.cfg.logger

	backoff, failures, lastWarn := backoffMin, 0, time.Time{}
	unreached := time.Now() // since when no scheduler
	var gone error
	grace := w.cfg.stopGrace
	for ctx.Err() == nil {
		done, registered, why := w.session(ctx)
		if done || ctx.Err() != nil {
			break
		}
		switch {
		case registered:
			backoff, failures = backoffMin, 0
			unreached = time.Now()
			log.Info("taskgrid: connection to the scheduler lost; reconnecting", "address", w.address, "err", why)
		case failures == 0 || time.Since(lastWarn) >= warnEvery:
			lastWarn = time.Now()
			log.Warn("taskgrid: cannot reach the scheduler; retrying", "address", w.address, "err", why)
			failures++
		default:
			failures++
		}
		wait := backoff
		if d := w.cfg.deathTimeout; d > 0 {
			left := d - time.Since(unreached)
			if left <= 0 {
				gone = fmt.Errorf("%w: %s out of reach for %v (last: %v)", ErrSchedulerGone, w.address, d, why)
				break
			}
			wait = min(wait, left)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, backoffMax)
	}
	// Cancelled tasks of a lost session may still be returning.
	if !w.exec.waitIdle(max(grace, 500*time.Millisecond)) {
		log.Warn("taskgrid: tasks did not stop; returning without waiting for them")
	}
	log.Info("taskgrid: worker stopped", "name", w.Name())
	return gone
}

// registration is the worker's first message.
func (w *Worker) registration() *pb.WorkerMessage {
	w.mu.Lock()
	funcs := slices.Sorted(maps.Keys(w.funcs))
	w.mu.Unlock()
	host, _ := os.Hostname()
	launchID := os.Getenv("TASKGRID_LAUNCH_ID")
	return &pb.WorkerMessage{
		Registration: &pb.Register{
			Name:        w.cfg.name,
			Nthreads:    uint32(w.cfg.nthreads),
			Functions:   funcs,
			Resources:   resourcesToPB(w.cfg.resources),
			Agent:       agent + " " + runtime.Version(),
			Pid:         uint32(os.Getpid()),
			Host:        host,
			LaunchId:    launchID,
			DataAddress: w.data.addr,
		},
		UptimeMs: uptimeMs(w.start),
	}
}

// session is one WorkerLink stream.
type session struct {
	w         *Worker
	stream    pb.WorkerLink_ConnectClient
	out       *outbox
	heartbeat atomic.Int64 // nanoseconds
	// The results this session holds; nil without a data service (every
	// result inline).
	store *store
	// Results larger than this are held (0: none), from the scheduler.
	inlineLimit atomic.Uint64
	registered  bool
	draining    bool // the scheduler asked us to drain
	closing     bool // Run's context was cancelled
}

type received struct {
	m   *pb.SchedulerMessage
	err error
}

// session runs one stream until it ends. done: stop for good (stopped or
// drained); registered: the scheduler accepted us; why: why it broke.
func (w *Worker) session(ctx context.Context) (done, registered bool, why error) {
	// Once registered, the stream outlives a cancellation of ctx:
	// unstarted work is handed back and results are flushed on it before
	// it closes. Until then, a cancellation aborts the attempt
	// (connecting to an unresponsive host can take long).
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	detach := context.AfterFunc(ctx, cancel)
	stream, err := pb.NewWorkerLinkClient(w.conn).Connect(sctx)
	if err != nil {
		return false, false, err
	}
	s := &session{w: w, stream: stream, out: newOutbox()}
	s.out.uploaded = &w.data.uploaded
	s.heartbeat.Store(int64(w.cfg.heartbeat))
	if w.data.addr != "" {
		s.store = newStore()
		s.store.notify = s.out.poke
		w.data.setStore(s.store)
		defer w.data.dropStore(s.store)
	}
	if err := stream.Send(w.registration()); err != nil {
		// The final status says more than "EOF".
		if _, rerr := stream.Recv(); rerr != nil {
			err = rerr
		}
		return false, false, err
	}
	if !detach() {
		return true, false, ctx.Err()
	}
	recv := make(chan received)
	go func() {
		for {
			m, err := stream.Recv()
			select {
			case recv <- received{m, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	senderDone := make(chan error, 1)
	go func() { senderDone <- s.sendLoop() }()
	// abandon ends a broken session: nothing of it is worth keeping.
	abandon := func(senderReturned bool) {
		s.out.abort()
		w.exec.cancelAll()
		cancel()
		if !senderReturned {
			<-senderDone
		}
	}

	stop := ctx.Done()
	registerTimer := time.NewTimer(registerTimeout)
	defer registerTimer.Stop()
	var graceTimer <-chan time.Time
	for {
		if (s.closing || s.draining) && w.exec.idle() {
			s.finish(senderDone, recv)
			return true, s.registered, nil
		}
		select {
		case r := <-recv:
			if r.err != nil {
				abandon(false)
				if s.closing || s.draining {
					w.cfg.logger.Warn("taskgrid: lost the scheduler while stopping", "err", r.err)
					return true, s.registered, r.err
				}
				return false, s.registered, r.err
			}
			s.handle(r.m)
		case err := <-senderDone:
			abandon(true)
			return s.closing || s.draining, s.registered, fmt.Errorf("sending to the scheduler: %w", err)
		case <-registerTimer.C:
			if !s.registered {
				abandon(false)
				return false, false, errors.New("the scheduler did not answer the registration")
			}
		case <-stop:
			stop = nil
			s.beginClose()
			graceTimer = time.After(w.cfg.stopGrace)
		case <-graceTimer:
			w.cfg.logger.Warn("taskgrid: tasks still running after the stop grace period; cancelling them", "grace", w.cfg.stopGrace)
			w.exec.cancelAll()
			s.finish(senderDone, recv)
			return true, s.registered, nil
		case <-w.data.mem.terminated():
			// As if the process died: nothing of this session is kept.
			abandon(false)
			return true, s.registered, w.data.mem.err()
		case <-w.exec.changed:
		}
	}
}

func (s *session) handle(m *pb.SchedulerMessage) {
	w := s.w
	if name := m.GetWorkerName(); name != "" && !s.registered {
		s.registered = true
		w.mu.Lock()
		w.name = name
		w.mu.Unlock()
		w.cfg.logger.Info("taskgrid: worker registered", "name", name, "address", w.address, "nthreads", w.cfg.nthreads)
	}
	if hb := m.GetHeartbeatMs(); hb > 0 {
		s.heartbeat.Store(int64(time.Duration(min(max(hb, 10), 3600000)) * time.Millisecond))
	}
	if limit := m.GetInlineLimit(); limit > 0 && s.store != nil {
		s.inlineLimit.Store(limit)
	}
	// Uploads before frees: bytes asked for in the same message as their
	// free still go out.
	for _, u := range m.GetUpload() {
		s.upload(u)
	}
	if free := m.GetFree(); len(free) > 0 && s.store != nil {
		s.store.free(free)
	}
	if cs := m.GetCopy(); len(cs) > 0 {
		s.copyResults(cs) // datacopy.go
	}
	// Cancels first: they refer to earlier assignments. If a key is
	// cancelled and assigned anew in one message, the new run must live.
	for _, key := range m.GetCancel() {
		w.exec.cancel(key)
	}
	if as := m.GetAssign(); len(as) > 0 {
		if s.closing || s.draining {
			keys := make([]string, len(as))
			for i, a := range as {
				keys[i] = a.GetKey()
			}
			s.out.pushReleased(keys...)
		} else {
			ts := make([]*task, len(as))
			for i, a := range as {
				ts[i] = s.newTask(a)
			}
			w.exec.submit(ts)
		}
	}
	if m.GetDrain() && !s.draining {
		s.draining = true
		w.cfg.logger.Info("taskgrid: draining: finishing assigned work, then stopping", "name", w.Name())
	}
}

// upload queues the bytes of a held result for the scheduler, or reports
// the key missing.
func (s *session) upload(u *pb.Upload) {
	var h heldResult
	ok := false
	if s.store != nil {
		h, ok = s.store.get(u.GetKey())
	}
	if !ok {
		s.out.pushMissing(u.GetKey())
		return
	}
	// Upload.offset and .length: a range (length 0, or past the end: to
	// the end); an offset at or past the end of a non-empty result asks
	// for nothing.
	size := uint64(h.size)
	off, n := u.GetOffset(), u.GetLength()
	if off > size || (off == size && size > 0) {
		h.release()
		return
	}
	end := size
	if n != 0 && n < size-off {
		end = off + n
	}
	s.out.pushUpload(&pendingUpload{id: u.GetId(), key: u.GetKey(), h: h, off: int(off), end: int(end)}) // releases h
}

func (s *session) newTask(a *pb.Assignment) *task {
	t := &task{key: a.GetKey(), a: a, priority: a.GetPriority(), w: s.w, sess: s}
	t.ctx, t.cancel = context.WithCancel(context.WithValue(context.Background(), taskCtxKey{}, t))
	return t
}

// beginClose: Run's context was cancelled. Queued tasks go back to the
// scheduler; running ones may finish within the grace period.
func (s *session) beginClose() {
	s.closing = true
	queued := s.w.exec.takeQueued()
	keys := make([]string, len(queued))
	for i, t := range queued {
		keys[i] = t.key
	}
	s.out.pushReleased(keys...)
	s.w.cfg.logger.Info("taskgrid: stopping: handed queued tasks back, waiting for running ones",
		"handed_back", len(keys), "grace", s.w.cfg.stopGrace)
}

// finish ends a session cleanly: send what is left, half-close, and give
// the scheduler a moment to end the call, so it sees a goodbye rather than
// a cancellation.
func (s *session) finish(senderDone chan error, recv <-chan received) {
	s.out.flush()
	timer := time.NewTimer(flushTimeout)
	defer timer.Stop()
	select {
	case err := <-senderDone:
		if err != nil {
			return
		}
	case <-timer.C:
		s.w.cfg.logger.Warn("taskgrid: could not send every result before stopping")
		return
	}
	if s.stream.CloseSend() != nil {
		return
	}
	timer.Reset(time.Second)
	for {
		select {
		case r := <-recv:
			if r.err != nil {
				return
			}
		case <-timer.C:
			return
		}
	}
}

// execute runs a started task (on its own goroutine) and routes its
// outcome to the session that assigned it, unless it was cancelled.
func (w *Worker) execute(t *task) {
	r := w.call(t)
	// Before the task counts as finished, so that a stopping worker does
	// not close the connection under this release.
	t.releaseNested()
	hold := t.sess.prepare(r)
	w.exec.finish(t, func() { t.sess.deliver(r, hold) })
	t.cancel()
}

// prepare decides whether a result stays in the store (it succeeded and is
// larger than the inline limit) and, if it must go inline, fails it when
// it is too large for one message.
func (s *session) prepare(r *pb.TaskResult) (hold bool) {
	if r.State != pb.TaskState_TASK_STATE_MEMORY {
		return false
	}
	r.Size = uint64(len(r.Data))
	if limit := s.inlineLimit.Load(); s.store != nil && limit > 0 && r.Size > limit {
		why := s.w.data.mem.tooLarge(r.Size)
		if why == "" {
			return true
		}
		r.State, r.Data, r.Codec, r.Size = pb.TaskState_TASK_STATE_ERRED, nil, "", 0
		r.Error = &pb.TaskError{Type: "tg.ResultTooLarge", Message: fmt.Sprintf("task %q: %s", r.Key, why)}
		s.w.cfg.logger.Warn("taskgrid: "+r.Error.Message, "task", r.Key)
		return false
	}
	// A result too large for one message would break the stream (and the
	// scheduler would blame the task for a lost worker): fail it here.
	if limit := s.w.cfg.maxMessage - messageHeadroom; resultSize(r) > limit {
		n, codec := len(r.Data), r.Codec
		r.State, r.Data, r.Codec, r.Size = pb.TaskState_TASK_STATE_ERRED, nil, "", 0
		r.Error = &pb.TaskError{Type: "tg.ResultTooLarge", Message: fmt.Sprintf(
			"the result of task %q is %d bytes (codec %s), over the %d-byte limit of one message (%.1f MiB), "+
				"and this worker sends results inside messages (it has no data service, or the scheduler sent no inline limit): "+
				"return a smaller value, or run the worker with a data service",
			r.Key, n, codec, limit, float64(limit)/(1<<20))}
		s.w.cfg.logger.Warn("taskgrid: "+r.Error.Message, "task", r.Key)
	}
	return false
}

// deliver (under the executor's lock) keeps a result to hold in the store
// and queues what goes to the scheduler.
func (s *session) deliver(r *pb.TaskResult, hold bool) {
	if hold && s.store.put(r.Key, r.Data, r.Codec) {
		s.w.data.held.add(len(r.Data))
		r.Held, r.Data = true, nil
	}
	s.out.push(r)
}

// call runs the task's function and turns its outcome into a TaskResult.
func (w *Worker) call(t *task) (r *pb.TaskResult) {
	r = &pb.TaskResult{Key: t.key, Attempt: t.a.GetAttempt()}
	var start time.Time // when the function was called (monotonic)
	defer func() {
		if p := recover(); p != nil {
			r.State, r.Data, r.Codec = pb.TaskState_TASK_STATE_ERRED, nil, ""
			r.Error = &pb.TaskError{Type: "go.Panic", Message: fmt.Sprint(p), Traceback: string(debug.Stack())}
		}
		if !start.IsZero() {
			r.RunUs = uint64(time.Since(start).Microseconds())
		}
	}()
	fn := w.funcs[t.a.GetFunc()]
	if fn == nil {
		r.State = pb.TaskState_TASK_STATE_ERRED
		r.Error = &pb.TaskError{Type: "tg.UnknownFunction",
			Message: fmt.Sprintf("function %q is not provided by worker %s", t.a.GetFunc(), w.Name())}
		return r
	}
	deps, err := w.inputs(t)
	if err != nil {
		r.State = pb.TaskState_TASK_STATE_ERRED
		r.Error = errorToPB(err)
		return r
	}
	start = time.Now()
	out, err := fn(t.ctx, t.a.GetInput(), deps)
	r.RunUs = uint64(time.Since(start).Microseconds())
	start = time.Time{}
	if err != nil {
		r.State = pb.TaskState_TASK_STATE_ERRED
		r.Error = errorToPB(err)
		return r
	}
	r.State, r.Data, r.Codec = pb.TaskState_TASK_STATE_MEMORY, out, t.codec()
	if r.Codec == "" {
		r.Codec = "raw"
	}
	return r
}

// errorToPB turns a task function's error into the protocol's TaskError.
func errorToPB(err error) *pb.TaskError {
	var te *TaskError
	if errors.As(err, &te) {
		typ := te.Type
		if typ == "" {
			typ = "go.Error"
		}
		msg := te.Message
		if msg == "" && te != err {
			msg = err.Error()
		}
		return &pb.TaskError{Type: typ, Message: msg, Traceback: te.Traceback}
	}
	return &pb.TaskError{Type: "go.Error", Message: err.Error()}
}

// ---------------------------------------------------------------------
// Outgoing: the outbox and the sender
// ---------------------------------------------------------------------

// outbox collects finished results, handed-back keys, the chunks of
// uploads and missing keys until the sender takes them, all at once, into
// one message (the chunks of an upload spread over several messages, so
// that results keep flowing between them).
type outbox struct {
	mu       sync.Mutex
	results  []*pb.TaskResult
	released []string
	uploads  []*pendingUpload // FIFO; the first one is being sent
	missing  []string
	copied   []*pb.CopyResult // answers to SchedulerMessage.copy
	// Running tasks that seceded or rejoined, in order (lend.go).
	secessions []*pb.Secession
	flushing   bool // send what is left, then stop
	aborted    bool // drop everything, stop
	wake       chan struct{}
	uploaded   *counter // counts each upload sent in full
}

// pendingUpload is a range of a result on its way up to the scheduler:
// sent up to off, asked up to end.
type pendingUpload struct {
	id       uint64
	key      string
	h        heldResult
	off, end int
}

func newOutbox() *outbox { return &outbox{wake: make(chan struct{}, 1)} }

func (o *outbox) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) push(r *pb.TaskResult) {
	o.mu.Lock()
	if !o.aborted {
		o.results = append(o.results, r)
	}
	o.mu.Unlock()
	o.poke()
}

func (o *outbox) pushReleased(keys ...string) {
	if len(keys) == 0 {
		return
	}
	o.mu.Lock()
	if !o.aborted {
		o.released = append(o.released, keys...)
	}
	o.mu.Unlock()
	o.poke()
}

// pushUpload queues u; its held result is released once sent.
func (o *outbox) pushUpload(u *pendingUpload) {
	o.mu.Lock()
	if !o.aborted {
		o.uploads = append(o.uploads, u)
	} else {
		u.h.release()
	}
	o.mu.Unlock()
	o.poke()
}

func (o *outbox) pushMissing(key string) {
	o.mu.Lock()
	if !o.aborted {
		o.missing = append(o.missing, key)
	}
	o.mu.Unlock()
	o.poke()
}

func (o *outbox) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.results) + len(o.released) + len(o.uploads) + len(o.missing) + len(o.copied) + len(o.secessions)
}

func (o *outbox) flush() {
	o.mu.Lock()
	o.flushing = true
	o.mu.Unlock()
	o.poke()
}

func (o *outbox) abort() {
	o.mu.Lock()
	o.aborted = true
	for _, u := range o.uploads {
		u.h.release()
	}
	o.results, o.released, o.uploads, o.missing, o.copied, o.secessions = nil, nil, nil, nil, nil, nil
	o.mu.Unlock()
	o.poke()
}

// batch is what one WorkerMessage carries.
type batch struct {
	results  []*pb.TaskResult
	released []string
	chunks   []*pb.DataChunk
	missing  []string
	copied   []*pb.CopyResult
	// secessions first: the scheduler applies them before results.
	secessions []*pb.Secession
}

func (b *batch) empty() bool {
	return len(b.results) == 0 && len(b.released) == 0 && len(b.chunks) == 0 && len(b.missing) == 0 && len(b.copied) == 0 && len(b.secessions) == 0
}

// take removes what one message carries: up to sendMaxItems results and
// keys (about sendMaxBytes), up to sendMaxBytes of upload chunks, and the
// missing keys. It says whether more is waiting and whether the sender
// should stop once empty.
func (o *outbox) take() (b batch, more, flushing, aborted bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.aborted {
		return batch{}, false, false, true
	}
	b.results, b.released = o.takeResults()
	b.chunks = o.takeChunks()
	b.missing, o.missing = o.missing, nil
	b.copied, o.copied = o.copied, nil
	b.secessions, o.secessions = o.secessions, nil
	more = len(o.results) > 0 || len(o.released) > 0 || len(o.uploads) > 0
	return b, more, o.flushing, false
}

// takeChunks (under mu) cuts the next chunks of the uploads in order, at
// most sendMaxBytes of them.
func (o *outbox) takeChunks() []*pb.DataChunk {
	var chunks []*pb.DataChunk
	budget := sendMaxBytes
	for len(o.uploads) > 0 {
		u := o.uploads[0]
		n := min(chunkMax, u.end-u.off)
		if len(chunks) > 0 && n > budget {
			break
		}
		c, err := newChunk(u.h, u.key, u.off, n, u.id)
		if err != nil {
			// Its spill file failed: the scheduler must look elsewhere.
			o.missing = append(o.missing, u.key)
			u.off = u.end
		} else {
			chunks = append(chunks, c)
			budget -= n
			u.off += n
			if o.uploaded != nil { // a result counts once, at its last byte
				o.uploaded.addN(boolToInt(u.off >= u.h.size), n)
			}
		}
		if u.off >= u.end {
			o.uploads[0] = nil
			o.uploads = o.uploads[1:]
			u.h.release()
		}
	}
	return chunks
}

// takeResults (under mu) removes up to sendMaxItems results and released
// keys, about sendMaxBytes.
func (o *outbox) takeResults() (results []*pb.TaskResult, released []string) {
	n, bytes := 0, 0
	for n < len(o.results) && n < sendMaxItems && (n == 0 || bytes+resultSize(o.results[n]) < sendMaxBytes) {
		bytes += resultSize(o.results[n])
		n++
	}
	if n == len(o.results) {
		results, o.results = o.results, nil
	} else {
		results = slices.Clone(o.results[:n])
		o.results = slices.Delete(o.results, 0, n)
	}
	room := max(sendMaxItems-n, 0)
	if len(o.released) <= room {
		released, o.released = o.released, nil
	} else {
		released = slices.Clone(o.released[:room])
		o.released = slices.Delete(o.released, 0, room)
	}
	return results, released
}

// resultSize approximates a result's share of a message.
func resultSize(r *pb.TaskResult) int {
	n := len(r.Key) + len(r.Data) + len(r.Codec) + 16
	if e := r.Error; e != nil {
		n += len(e.Type) + len(e.Message) + len(e.Traceback)
	}
	return n
}

// sendLoop turns the outbox into WorkerMessages: everything waiting goes
// out in one message (so results batch up by themselves while a send is in
// flight); when nothing was sent for a heartbeat interval, an empty
// message goes out. It returns nil once flushed or aborted, or the send
// error.
func (s *session) sendLoop() error {
	last := time.Now()
	timer := time.NewTimer(time.Duration(s.heartbeat.Load()))
	defer timer.Stop()
	for {
		select {
		case <-s.out.wake:
		case <-timer.C:
		}
		// Let task goroutines that are about to finish do so first, so
		// that this message carries their results too: without it a busy
		// worker sends about one result per message (a send is fast in
		// Go), which costs the scheduler and this worker several times
		// more CPU per task. A yield costs far less than a message.
		for range 4 {
			n := s.out.pending()
			runtime.Gosched()
			if s.out.pending() == n {
				break
			}
		}
		b, more, flushing, aborted := s.out.take()
		if aborted {
			return nil
		}
		hb := time.Duration(s.heartbeat.Load())
		due := s.store != nil && s.w.data.mem.reportDue()
		if b.empty() {
			if flushing {
				return nil
			}
			if wait := hb - time.Since(last); wait > 0 && !due {
				timer.Reset(wait)
				continue
			}
		}
		// Every message carries the memory report, read after the flag
		// (so it is at least as new as what set it).
		var mem *pb.MemoryReport
		if s.store != nil && s.w.data.mem != nil {
			mem = s.w.data.mem.report(s.store)
		}
		m := &pb.WorkerMessage{Results: b.results, Released: b.released, Chunks: b.chunks, Missing: b.missing, Copied: b.copied, Secessions: b.secessions, Memory: mem, UptimeMs: uptimeMs(s.w.start)}
		if err := s.stream.Send(m); err != nil {
			return err
		}
		last = time.Now()
		if more || flushing {
			s.out.poke()
		}
		timer.Reset(hb)
	}
}
