// SPDX-License-Identifier: Apache-2.0

// direct.go: WithDirectToWorkers, a client fetching results held on
// workers from a holder instead of through the scheduler. Its Gather
// streams ask for deferred held results (GatherRequest.defer_held: a held
// result comes as its TaskResult, with its size, codec and holders' data
// addresses, and no bytes); each one is then fetched from its holders in
// order with the workers' own checked Fetch (datafetch.go: offsets, size,
// CRC-32 of every chunk). A result no holder delivers (unreachable,
// PERMISSION_DENIED, NOT_FOUND, a bad chunk) is logged once, naming each
// holder and why, and gathered through the scheduler after all, so
// nothing is lost. Over TLS the holder's certificate must be signed by the
// cluster CA, name "taskgrid-worker" and carry the worker role.

package taskgrid

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// directFetch is a client's fetcher of held results from their holders.
type directFetch struct {
	peers *peerConns
	log   *slog.Logger
}

// newDirectFetch prepares the credentials of the scheduler address's TLS
// mode (data services speak it) for fetching from holders.
func newDirectFetch(address string, cfg config) (*directFetch, error) {
	_, useTLS, err := parseAddress(address)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if useTLS && cfg.security != nil {
		pool, pair, err := cfg.security.material()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(peerTLS(pool, pair, workerTLSName))
	}
	return &directFetch{peers: newPeerConns(creds, cfg.maxMessage), log: cfg.logger}, nil
}

// fetch returns the bytes of held result r from the first of its holders
// that delivers them whole; false (after one warning) when none does.
func (d *directFetch) fetch(ctx context.Context, r *pb.TaskResult) ([]byte, bool) {
	var why []string
	for _, addr := range r.GetHolders() {
		b, err := d.peers.fetch(ctx, addr, r.GetKey(), r.GetSize())
		if err == nil {
			return b, true
		}
		why = append(why, fmt.Sprintf("holder %s: %s", addr, err))
		if ctx.Err() != nil {
			return nil, false
		}
	}
	if len(why) == 0 {
		why = append(why, "no holder known")
	}
	d.log.Warn(fmt.Sprintf("taskgrid: direct_to_workers: result '%s' (%d bytes): %s; getting it through the scheduler instead",
		r.GetKey(), r.GetSize(), strings.Join(why, "; ")))
	return nil, false
}

// settleHeld fills the futures of deferred held results: fetched from a
// holder, else gathered through the scheduler.
func (c *Client) settleHeld(ctx context.Context, held []*pb.TaskResult, waiting map[string][]*Future) error {
	var relay []string
	for _, r := range held {
		if b, ok := c.direct.fetch(ctx, r); ok {
			r.Data = b
			for _, f := range waiting[r.GetKey()] {
				f.settle(r)
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return callError(ctx, "gather", err)
		}
		relay = append(relay, r.GetKey())
	}
	if len(relay) == 0 {
		return nil
	}
	return c.gatherStream(ctx, relay, waiting, false)
}
