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
