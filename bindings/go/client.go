// SPDX-License-Identifier: Apache-2.0

// client.go: the Client: one gRPC connection to a scheduler (service
// taskgrid.v1.Scheduler), batched submission of task graphs, the holds this
// client has on results, and the small management calls (Cancel, Release,
// Annotate, Scale, Status). Gathering lives in future.go. Depends on grpc-go
// and the generated stubs.

package taskgrid

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

const (
	// MaxKeyLen is the longest task key the scheduler accepts, in bytes.
	MaxKeyLen = 1024
	// maxBatch caps the entries of one repeated field per message: well
	// under the protocol's 65,535, and large enough that a message's fixed
	// cost is noise. Submit, Gather, Cancel and Release split at it.
	maxBatch = 10000
	// defaultConnectTimeout bounds Dial's check that the scheduler answers
	// when the caller's context has no deadline.
	defaultConnectTimeout = 10 * time.Second
	// releaseTimeout bounds the releases sent by Close and after a failed
	// submission when the caller's context has no deadline.
	releaseTimeout = 5 * time.Second
	userAgent      = "taskgrid-go/0.1"
)

// Task is one task of a graph.
type Task struct {
	// Key names the task; empty: a new key from NewKey(Func). Submitting a
	// key the scheduler already knows refers to that task (it does not run
	// twice). At most MaxKeyLen bytes.
	Key string
	// Func is the function, "namespace.name" (e.g. "tg.inc"). Required.
	Func string
	// Input is passed to the function, interpreted according to Codec.
	Input []byte
	// Codec tags Input: "raw" (the default when empty), "json", ...
	Codec string
	// Deps are keys whose results are passed to the function after its
	// input, in this order: keys of the same SubmitMany call or known ones.
	Deps []string
	// Priority: higher runs first; FIFO among equal priorities.
	Priority int32
	// Resources the task holds while it runs, e.g. {"GPU": 1}.
	Resources map[string]float64
	// Retries after an error or a lost worker.
	Retries uint32
	// Workers, if not empty, restricts the task to workers of these names.
	Workers []string
}

// Client is a connection to one scheduler. It is safe for concurrent use.
// Close it to release the results it still holds.
type Client struct {
	address string
	cfg     config
	conn    *grpc.ClientConn
	rpc     pb.SchedulerClient
	id      string
	// ownsConn is false for a worker-side client, which borrows its
	// worker's connection.
	ownsConn bool
	// direct fetches held results from their holders (WithDirectToWorkers);
	// nil: through the scheduler.
	direct *directFetch
	// parent: a worker-side client's task key, sent as TaskSpec.parent
	// with each task it submits (nested work), so that cancelling the task
	// cancels them; "" otherwise.
	parent string

	mu     sync.Mutex
	holds  map[string]int // key -> holds this client has on the scheduler
	closed bool
}

// Dial connects to the scheduler at address ("tcp://host:port",
// "tls://host:port" with WithSecurity, or "host:port") and checks that it
// answers, waiting for it until ctx ends (at most 10 s if ctx has no
// deadline).
func Dial(ctx context.Context, address string, opts ...Option) (*Client, error) {
	cfg := newConfig(opts)
	conn, err := dialConn(address, cfg)
	if err != nil {
		return nil, err
	}
	c := newClient(address, cfg, conn, true)
	if cfg.directToWorkers {
		if c.direct, err = newDirectFetch(address, cfg); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	if err := c.ping(ctx); err != nil {
		c.closeDirect()
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// dialConn makes a (lazily connecting) gRPC connection for an address.
func dialConn(address string, cfg config) (*grpc.ClientConn, error) {
	target, creds, err := transportCredentials(address, cfg.security)
	if err != nil {
		return nil, err
	}
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent(userAgent),
		// Reconnect quickly: a scheduler is usually near (the default
		// backoff starts at 1 s and grows to 2 min).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(cfg.maxMessage),
			grpc.MaxCallSendMsgSize(cfg.maxMessage)),
	}, cfg.dialOpts...)
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("taskgrid: %s: %w", address, err)
	}
	return conn, nil
}

func newClient(address string, cfg config, conn *grpc.ClientConn, owns bool) *Client {
	id := cfg.clientID
	if id == "" {
		id = "client-" + randomHex()
	}
	return &Client{
		address:  address,
		cfg:      cfg,
		conn:     conn,
		rpc:      pb.NewSchedulerClient(conn),
		id:       id,
		ownsConn: owns,
		holds:    make(map[string]int),
	}
}

// ping waits until the scheduler answers the standard health check, or
// ctx ends (10 s without a deadline). A scheduler that is not listening
// yet is waited for; a failed TLS handshake fails at once, with a hint,
// since waiting would not change it.
func (c *Client) ping(ctx context.Context) error {
	ctx, cancel := boundedContext(ctx, defaultConnectTimeout)
	defer cancel()
	hc := healthpb.NewHealthClient(c.conn)
	op := "connect to " + c.address
	for {
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		switch {
		case err == nil || status.Code(err) == codes.Unimplemented:
			return nil
		case status.Code(err) != codes.Unavailable || ctx.Err() != nil:
			return callError(ctx, op, err)
		case c.cfg.security != nil && tlsFailure(err):
			return fmt.Errorf("taskgrid: %s: the TLS handshake failed; the scheduler refuses a certificate that is missing, expired or not signed by its CA, and so does this client for the scheduler's: %w", op, err)
		}
		// Not reachable yet (e.g. still starting): wait for the next
		// connection attempt (or a moment, if connected but unavailable).
		st := c.conn.GetState()
		if st == connectivity.Ready {
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
			}
		} else if !c.conn.WaitForStateChange(ctx, st) {
			return callError(ctx, op, err)
		}
	}
}

// tlsFailure recognises a failed TLS handshake in a connection error. With
// TLS 1.3 the client's side of the handshake completes before the server
// checks the client's certificate, so a refusal shows up afterwards as the
// server closing the connection: EOF before the HTTP/2 preface, a broken
// pipe or a reset.
func tlsFailure(err error) bool {
	msg := err.Error()
	for _, s := range []string{"handshake", "tls:", "x509:", "certificate", "server preface", "broken pipe", "connection reset", "EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Address is the address the client was dialled with.
func (c *Client) Address() string { return c.address }

// ID is the client identifier sent with submissions.
func (c *Client) ID() string { return c.id }

// Close releases every result this client still holds (bounded by ctx, or
// 5 s without a deadline), then closes the connection. Futures keep what
// they already gathered. Closing twice is a no-op.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	var keys []string
	for k, n := range c.holds {
		for range n {
			keys = append(keys, k)
		}
	}
	c.holds = nil
	c.closed = true
	c.mu.Unlock()

	ctx, cancel := boundedContext(ctx, releaseTimeout)
	defer cancel()
	err := c.releaseKeys(ctx, keys)
	c.closeDirect()
	if c.ownsConn {
		err = errors.Join(err, c.conn.Close())
	}
	return err
}

func (c *Client) closeDirect() {
	if c.direct != nil {
		c.direct.peers.close()
	}
}

func (c *Client) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return nil
}

// Submit submits one task; see SubmitMany.
func (c *Client) Submit(ctx context.Context, t Task) (*Future, error) {
	fs, err := c.SubmitMany(ctx, []Task{t})
	if err != nil {
		return nil, err
	}
	return fs[0], nil
}

// SubmitMany submits a graph of tasks in one call and returns one Future
// per task, in order. Dependencies may name tasks of the same call, in any
// order, or keys the scheduler already knows. The graph goes out as one
// Submit message, or, above 10,000 tasks or half the message limit, as
// several in dependency order; the scheduler validates each message as a
// whole. On failure no future is returned and tasks of earlier messages are
// released.
func (c *Client) SubmitMany(ctx context.Context, tasks []Task) ([]*Future, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	specs := make([]*pb.TaskSpec, len(tasks))
	for i := range tasks {
		s, err := tasks[i].spec()
		if err != nil {
			return nil, fmt.Errorf("taskgrid: submit: task %d: %w", i, err)
		}
		s.Parent = c.parent
		specs[i] = s
	}
	var sent []string
	for _, batch := range splitSubmission(specs, c.cfg.maxMessage/2) {
		_, err := c.rpc.Submit(ctx, &pb.SubmitRequest{Tasks: batch, ClientId: c.id})
		if err != nil {
			if len(sent) > 0 {
				rctx, cancel := boundedContext(context.WithoutCancel(ctx), releaseTimeout)
				_ = c.releaseKeys(rctx, sent)
				cancel()
			}
			return nil, callError(ctx, "submit", err)
		}
		for _, s := range batch {
			sent = append(sent, s.Key)
		}
	}
	fs := make([]*Future, len(specs))
	c.mu.Lock()
	for i, s := range specs {
		if c.holds != nil {
			c.holds[s.Key]++
		}
		fs[i] = newFuture(c, s.Key)
	}
	c.mu.Unlock()
	return fs, nil
}

// spec validates a task and turns it into its wire form.
func (t *Task) spec() (*pb.TaskSpec, error) {
	if t.Func == "" {
		return nil, errors.New("Func is required")
	}
	key := t.Key
	if key == "" {
		key = NewKey(t.Func)
	}
	if len(key) > MaxKeyLen {
		return nil, fmt.Errorf("key of %d bytes is longer than %d", len(key), MaxKeyLen)
	}
	for name, amount := range t.Resources {
		if amount < 0 {
			return nil, fmt.Errorf("resource %q: negative amount %g", name, amount)
		}
	}
	return &pb.TaskSpec{
		Key:       key,
		Func:      t.Func,
		Input:     t.Input,
		Codec:     t.Codec,
		Deps:      t.Deps,
		Priority:  t.Priority,
		Resources: resourcesToPB(t.Resources),
		Retries:   t.Retries,
		Workers:   t.Workers,
	}, nil
}

// splitSubmission cuts a graph into messages of at most maxBatch tasks and
// about maxBytes bytes. A graph that needs several messages is first put in
// dependency order (stable), so that every dependency inside the call is
// known to the scheduler by the time its dependents arrive.
func splitSubmission(specs []*pb.TaskSpec, maxBytes int) [][]*pb.TaskSpec {
	size := func(s *pb.TaskSpec) int {
		n := len(s.Key) + len(s.Func) + len(s.Input) + len(s.Codec) + 32
		for _, d := range s.Deps {
			n += len(d) + 2
		}
		return n + 16*len(s.Resources)
	}
	total := 0
	for _, s := range specs {
		total += size(s)
	}
	if len(specs) <= maxBatch && total <= maxBytes {
		return [][]*pb.TaskSpec{specs}
	}
	specs = dependencyOrder(specs)
	var out [][]*pb.TaskSpec
	start, bytes := 0, 0
	for i, s := range specs {
		n := size(s)
		if i > start && (i-start == maxBatch || bytes+n > maxBytes) {
			out = append(out, specs[start:i])
			start, bytes = i, 0
		}
		bytes += n
	}
	return append(out, specs[start:])
}

// dependencyOrder returns specs with every task after the tasks of the same
// call it depends on (Kahn's algorithm; tasks without such dependencies keep
// their order and come first). Tasks on a cycle go last; the scheduler
// refuses them with a message naming the key.
func dependencyOrder(specs []*pb.TaskSpec) []*pb.TaskSpec {
	first := make(map[string]int, len(specs))
	for i, s := range specs {
		if _, ok := first[s.Key]; !ok {
			first[s.Key] = i
		}
	}
	indeg := make([]int, len(specs))
	users := make(map[int][]int)
	for i, s := range specs {
		for _, d := range s.Deps {
			if j, ok := first[d]; ok && j != i {
				indeg[i]++
				users[j] = append(users[j], i)
			}
		}
	}
	ready := make([]int, 0, len(specs))
	for i := range specs {
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]*pb.TaskSpec, 0, len(specs))
	placed := make([]bool, len(specs))
	for q := 0; q < len(ready); q++ {
		i := ready[q]
		out = append(out, specs[i])
		placed[i] = true
		for _, u := range users[i] {
			if indeg[u]--; indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	for i, s := range specs {
		if !placed[i] {
			out = append(out, s)
		}
	}
	return out
}

// Cancel cancels tasks and, transitively, every task depending on them,
// and the tasks each submitted from inside its run (nested work),
// recursively; it returns how many were cancelled. Finished tasks are not
// changed.
func (c *Client) Cancel(ctx context.Context, keys ...string) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	n := 0
	for part := range slices.Chunk(keys, maxBatch) {
		r, err := c.rpc.Cancel(ctx, &pb.CancelRequest{Keys: part})
		if err != nil {
			return n, callError(ctx, "cancel", err)
		}
		n += int(r.GetCancelled())
	}
	return n, nil
}

// Release tells the scheduler this client no longer needs these results:
// one hold per listed key is dropped, and a result no client holds and no
// pending task needs is forgotten. Keys this client does not hold are
// skipped, so a client never drops another's hold. Futures keep what they
// already gathered. It returns how many tasks the scheduler forgot.
func (c *Client) Release(ctx context.Context, keys ...string) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	send := make([]string, 0, len(keys))
	for _, k := range keys {
		if c.holds[k] > 0 {
			if c.holds[k]--; c.holds[k] == 0 {
				delete(c.holds, k)
			}
			send = append(send, k)
		}
	}
	c.mu.Unlock()
	n, err := c.releaseN(ctx, send)
	return n, err
}

func (c *Client) releaseKeys(ctx context.Context, keys []string) error {
	_, err := c.releaseN(ctx, keys)
	return err
}

func (c *Client) releaseN(ctx context.Context, keys []string) (int, error) {
	n := 0
	for i := 0; i < len(keys); i += maxBatch {
		part := keys[i:min(i+maxBatch, len(keys))]
		r, err := c.rpc.Release(ctx, &pb.ReleaseRequest{Keys: part})
		if err != nil {
			// Keep the holds not dropped, so that Close tries again.
			c.mu.Lock()
			if c.holds != nil {
				for _, k := range keys[i:] {
					c.holds[k]++
				}
			}
			c.mu.Unlock()
			return n, callError(ctx, "release", err)
		}
		n += int(r.GetReleased())
	}
	return n, nil
}

// Annotation changes tasks that have not started yet; nil fields are left
// as they are, e.g. Annotation{Priority: new(int32(10))}.
type Annotation struct {
	Priority *int32
	Retries  *uint32
	// Resources, when not nil, replaces the resource requests.
	Resources map[string]float64
}

// Annotate changes priority, retries or resources of tasks that have not
// started; it returns how many tasks changed.
func (c *Client) Annotate(ctx context.Context, a Annotation, keys ...string) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	pa := &pb.Annotation{}
	if a.Priority != nil {
		pa.HasPriority, pa.Priority = true, *a.Priority
	}
	if a.Retries != nil {
		pa.HasRetries, pa.Retries = true, *a.Retries
	}
	if a.Resources != nil {
		pa.HasResources, pa.Resources = true, resourcesToPB(a.Resources)
	}
	n := 0
	for part := range slices.Chunk(keys, maxBatch) {
		r, err := c.rpc.Annotate(ctx, &pb.AnnotateRequest{Keys: part, Annotation: pa})
		if err != nil {
			return n, callError(ctx, "annotate", err)
		}
		n += int(r.GetChanged())
	}
	return n, nil
}

// ScaleInfo is the scheduler's answer to Scale and Adapt.
type ScaleInfo struct {
	Workers int // workers connected now
	Target  int // what the launcher is moving towards
}

// Scale asks the scheduler's launcher for n workers; extra workers are
// drained first, losing nothing. It returns once the scheduler took the
// request; workers connect later.
func (c *Client) Scale(ctx context.Context, n int) (ScaleInfo, error) {
	if n < 0 {
		return ScaleInfo{}, fmt.Errorf("taskgrid: scale: negative worker count %d", n)
	}
	return c.scale(ctx, &pb.ScaleRequest{Workers: uint32(n)})
}

// Adapt lets the scheduler adapt the number of workers between minimum and
// maximum (> 0) from the queued work.
func (c *Client) Adapt(ctx context.Context, minimum, maximum int) (ScaleInfo, error) {
	if minimum < 0 || maximum <= 0 || minimum > maximum {
		return ScaleInfo{}, fmt.Errorf("taskgrid: adapt: need 0 <= minimum <= maximum and maximum > 0, got %d, %d", minimum, maximum)
	}
	return c.scale(ctx, &pb.ScaleRequest{Minimum: uint32(minimum), Maximum: uint32(maximum)})
}

func (c *Client) scale(ctx context.Context, req *pb.ScaleRequest) (ScaleInfo, error) {
	if err := c.checkOpen(); err != nil {
		return ScaleInfo{}, err
	}
	r, err := c.rpc.Scale(ctx, req)
	if err != nil {
		return ScaleInfo{}, callError(ctx, "scale", err)
	}
	return ScaleInfo{Workers: int(r.GetWorkers()), Target: int(r.GetTarget())}, nil
}

// WorkerInfo describes a connected worker.
type WorkerInfo struct {
	Name       string
	NThreads   int
	Processing int // tasks assigned and not finished
	Functions  []string
	Resources  map[string]float64
	Draining   bool
	// From the worker's last memory report (zero for a worker that sends
	// none, such as a Go worker without a data service): bytes of held results in its memory and
	// spilled to its disk, its memory limit (0: none), whether it is
	// paused (assigned nothing new) and its process RSS (0: unknown).
	Memory, Spilled, MemoryLimit, RSS uint64
	Paused                            bool
	// Of Processing, the tasks waiting on nested work (seceded): they do
	// not count against NThreads.
	Seceded int
}

// KeyStatus is the scheduler's view of one key.
type KeyStatus struct {
	Key    string
	State  TaskState
	Reason string // why a ready task does not run, e.g. no worker provides its function
	// Parent is the key of the task that submitted this one (nested work),
	// given only when the same Status call names that parent too.
	Parent string
	// Seceded: processing, and waiting on nested work.
	Seceded bool
	// Worker is the name of the worker whose run made the task finished or
	// erred (its last attempt's); empty while it is not final, and for an
	// outcome from no run of its own (cancelled, a failed dependency).
	Worker string
	// RunTime is how long that run took on the worker, as it measured it
	// around the function call (zero without Worker).
	RunTime time.Duration
}

// ClusterStatus is a snapshot of the cluster.
type ClusterStatus struct {
	Workers                                              []WorkerInfo
	Waiting, Ready, Processing, Memory, Erred, Cancelled uint64
	// Unplaceable counts ready tasks no connected worker can run.
	Unplaceable uint64
	// Keys reports on the keys asked for, in order.
	Keys    []KeyStatus
	Version string
	// Launcher is what starts workers for Scale; nil when the scheduler
	// has none (--launcher none).
	Launcher *LauncherStatus
}

// LauncherStatus describes the scheduler's launcher (local processes,
// Slurm jobs or SSH hosts) and the units it started.
type LauncherStatus struct {
	Kind   string // "local", "slurm" or "ssh"
	Target int    // workers the scaling target asks for
	// Active workers count toward the target: connected, or still
	// starting (pending batch jobs included); Starting are not connected
	// yet.
	Active, Starting int
	// Failures counts failed starts; LastError is the latest one, in the
	// launcher's words (the batch system's or ssh's message).
	Failures  uint64
	LastError string
	Units     []LauncherUnit
}

// LauncherUnit is one start of the launcher: a process, a batch job (of
// Workers workers) or a process on an SSH host.
type LauncherUnit struct {
	ID        string
	State     string // "starting", "pending", "running" or "stopping"
	Where     string // "pid 12", "slurm job 42" or the host
	Workers   int
	Connected int
}

func launcherFromPB(l *pb.LauncherStatus) *LauncherStatus {
	if l == nil {
		return nil
	}
	s := &LauncherStatus{
		Kind: l.GetKind(), Target: int(l.GetTarget()), Active: int(l.GetActive()),
		Starting: int(l.GetStarting()), Failures: l.GetFailures(), LastError: l.GetLastError(),
	}
	for _, u := range l.GetUnits() {
		s.Units = append(s.Units, LauncherUnit{
			ID: u.GetId(), State: u.GetState(), Where: u.GetWhere(),
			Workers: int(u.GetWorkers()), Connected: int(u.GetConnected()),
		})
	}
	return s
}

// Status returns the workers, the number of tasks per state and, for the
// given keys, their state and why they wait.
func (c *Client) Status(ctx context.Context, keys ...string) (*ClusterStatus, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	r, err := c.rpc.Status(ctx, &pb.StatusRequest{Keys: keys})
	if err != nil {
		return nil, callError(ctx, "status", err)
	}
	s := &ClusterStatus{
		Waiting: r.GetWaiting(), Ready: r.GetReady(), Processing: r.GetProcessing(),
		Memory: r.GetMemory(), Erred: r.GetErred(), Cancelled: r.GetCancelled(),
		Unplaceable: r.GetUnplaceable(), Version: r.GetVersion(),
		Launcher: launcherFromPB(r.GetLauncher()),
	}
	for _, w := range r.GetWorkers() {
		s.Workers = append(s.Workers, workerInfoFromPB(w))
	}
	for _, k := range r.GetKeys() {
		s.Keys = append(s.Keys, KeyStatus{
			Key: k.GetKey(), State: TaskState(k.GetState()), Reason: k.GetReason(),
			Parent: k.GetParent(), Seceded: k.GetSeceded(),
			Worker: k.GetWorker(), RunTime: time.Duration(k.GetRunUs()) * time.Microsecond,
		})
	}
	return s, nil
}

// Children returns the keys of the tasks that the task key submitted from
// inside its run (nested work, TaskSpec.parent) and the scheduler still
// knows, in no particular order: one level of the tree; call it again on
// each child for the next.
func (c *Client) Children(ctx context.Context, key string) ([]string, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	r, err := c.rpc.Status(ctx, &pb.StatusRequest{Keys: []string{key}, Children: true})
	if err != nil {
		return nil, callError(ctx, "status", err)
	}
	return r.GetKeys()[0].GetChildren(), nil
}

// resourcesToPB turns a resource map into its wire form, sorted by name so
// that equal maps give equal messages.
func resourcesToPB(m map[string]float64) []*pb.Resource {
	if len(m) == 0 {
		return nil
	}
	out := make([]*pb.Resource, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, &pb.Resource{Name: name, Amount: m[name]})
	}
	return out
}

func resourcesFromPB(rs []*pb.Resource) map[string]float64 {
	if len(rs) == 0 {
		return nil
	}
	m := make(map[string]float64, len(rs))
	for _, r := range rs {
		m[r.GetName()] = r.GetAmount()
	}
	return m
}

// boundedContext adds a timeout to a context that has no deadline.
func boundedContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
