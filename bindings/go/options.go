// SPDX-License-Identifier: Apache-2.0

// options.go: the functional options shared by Dial and NewWorker. One
// option type serves both because a worker also dials (its worker-side
// client uses the worker's address, security and limits); options that only
// make sense on one side say so and are ignored by the other.

package taskgrid

import (
	"log/slog"
	"time"

	"google.golang.org/grpc"
)

// Option configures a Client (Dial) or a Worker (NewWorker).
type Option func(*config)

type config struct {
	security   *Security
	clientID   string
	maxMessage int
	dialOpts   []grpc.DialOption
	logger     *slog.Logger

	// Worker only.
	name      string
	nthreads  int
	resources map[string]float64
	heartbeat time.Duration
	stopGrace time.Duration
	// deathTimeout: Run gives up after this long without a scheduler
	// (0: never).
	deathTimeout time.Duration
	// Data service (data.go): listen address, advertised address; "" for
	// the defaults, DataNone to run none.
	dataListen  string
	dataAddress string
	// Over TLS, the data service admits client certificates too.
	dataClients bool

	// Client only: fetch held results from their holders (direct.go).
	directToWorkers bool

	// Memory management (memory.go).
	memory memoryOptions
}

// defaultMaxMessage is the scheduler's default message limit (64 MiB).
const defaultMaxMessage = 64 << 20

func newConfig(opts []Option) config {
	c := config{
		maxMessage: defaultMaxMessage,
		logger:     slog.Default(),
		heartbeat:  time.Second,
		stopGrace:  10 * time.Second,
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithSecurity sets the TLS material for a "tls://" address (mutual TLS).
func WithSecurity(s *Security) Option { return func(c *config) { c.security = s } }

// WithClientID sets the client identifier sent with submissions (default: a
// random "client-<16 hex>"). Client only.
func WithClientID(id string) Option { return func(c *config) { c.clientID = id } }

// WithMaxMessageSize sets the largest gRPC message sent or received, in
// bytes (default 64 MiB, the scheduler's default). Submissions are split to
// stay under it.
func WithMaxMessageSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxMessage = n
		}
	}
}

// WithDialOptions adds raw grpc-go dial options (interceptors, keepalive,
// ...), applied after taskgrid's own.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOpts = append(c.dialOpts, opts...) }
}

// WithLogger sets where connection events are logged (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithName sets the worker's name (default "HOST-PID"; the scheduler adds
// a suffix to a duplicate). Worker only.
func WithName(name string) Option { return func(c *config) { c.name = name } }

// WithNThreads sets how many tasks the worker runs at once (default
// GOMAXPROCS). Worker only.
func WithNThreads(n int) Option { return func(c *config) { c.nthreads = n } }

// WithResources declares the worker's resource capacities, e.g.
// {"GPU": 1}; the scheduler sends it only tasks whose requests fit. Worker
// only.
func WithResources(r map[string]float64) Option {
	return func(c *config) { c.resources = r }
}

// WithStopGrace sets how long running tasks may take to finish after the
// context given to Run is cancelled (default 10 s); after it they are
// cancelled and the scheduler reschedules them. Worker only.
func WithStopGrace(d time.Duration) Option { return func(c *config) { c.stopGrace = d } }

// WithDeathTimeout makes Run give up, returning an error matching
// ErrSchedulerGone, once the scheduler has been out of reach for d, at
// start or after losing it (0, the default: keep trying), so a worker
// whose scheduler died (in a batch job) does not wait forever. Worker
// only.
func WithDeathTimeout(d time.Duration) Option { return func(c *config) { c.deathTimeout = d } }

// DataNone, given to WithDataListen, runs the worker without a data
// service: it registers no data address and sends every result inline.
const DataNone = "none"

// WithDataListen sets where the worker's data service listens
// ("HOST:PORT"; port 0 picks a free one). The data service serves the
// results this worker holds to other workers (DataService.Fetch). Default:
// 127.0.0.1:0 when the scheduler's address is a loopback literal
// (127.x.x.x, ::1, localhost), else 0.0.0.0:0. DataNone ("none"): no data
// service. Worker only.
func WithDataListen(addr string) Option { return func(c *config) { c.dataListen = addr } }

// WithDataAddress sets the address ("HOST:PORT") the worker advertises for
// its data service, e.g. a name other workers can resolve. A missing port
// or port 0 stands for the port the service listens on. Default: the listen
// host with that port; when listening on all interfaces, the machine's IP
// address on the route to the scheduler (never a loopback or IPv6
// link-local one), else its host name. Worker only.
func WithDataAddress(addr string) Option { return func(c *config) { c.dataAddress = addr } }

// WithDataClients lets client certificates fetch this worker's held
// results over TLS (DataService.Fetch), for clients that fetch directly
// (WithDirectToWorkers); by default only worker certificates may, and
// admin certificates never do. Over plaintext anyone may fetch. The
// command line's --data-clients. Worker only.
func WithDataClients(on bool) Option { return func(c *config) { c.dataClients = on } }

// WithDirectToWorkers makes the client fetch results held on workers
// (those over the scheduler's inline limit) from a worker holding them
// (DataService.Fetch, every chunk checked), instead of through the
// scheduler, as Dask's direct_to_workers. The client must reach the
// workers' data addresses; over TLS it verifies the holder's certificate
// against the cluster CA for the name "taskgrid-worker" and the worker
// role, and the workers must admit client certificates (WithDataClients,
// --data-clients). When no holder delivers (unreachable, refused, gone, a
// bad chunk) the result comes through the scheduler after all, with one
// warning naming each holder and why. Default false: every result comes
// through the scheduler, so clients never need a route to a worker. Client
// only.
func WithDirectToWorkers(on bool) Option { return func(c *config) { c.directToWorkers = on } }
