// SPDX-License-Identifier: Apache-2.0

// datafetch.go: a task's inputs whose bytes are held on workers (an
// Assignment dep with empty data and a list of holders): from this
// worker's own store when it holds them (no transfer), else fetched from
// the holders in order with DataService.Fetch, every chunk checked. A task
// whose input no holder delivers fails with "tg.FetchFailed" before its
// function runs. Fetched copies live only as long as the task. The
// connections to holders and the checked Fetch (peerConns) serve clients
// that fetch directly too (direct.go).

package taskgrid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// inputs returns the bytes of t's dependencies, in order.
func (w *Worker) inputs(t *task) ([][]byte, error) {
	deps := t.a.GetDeps()
	out := make([][]byte, len(deps))
	for i, d := range deps {
		if len(d.GetData()) > 0 || len(d.GetHolders()) == 0 {
			out[i] = d.GetData()
			continue
		}
		b, err := w.data.input(t.ctx, t.sess, d)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// input finds a held dependency locally or fetches it from its holders.
func (p *dataPlane) input(ctx context.Context, s *session, d *pb.TaskResult) ([]byte, error) {
	key := d.GetKey()
	if h, ok := p.lookup(key); ok {
		// Read whole when spilled: the copy lives as long as the task.
		b, err := h.whole()
		h.release()
		if err == nil {
			p.local.add(len(b))
			return b, nil
		}
		return nil, &TaskError{Type: "tg.FetchFailed", Message: fmt.Sprintf("input '%s' (%d bytes): this worker holds it, spilled: %v", key, h.size, err)}
	}
	var why []string
	for _, addr := range d.GetHolders() {
		if p.addr != "" && addr == p.addr {
			// Named as a holder, but not in the store (freed, or held by
			// an earlier session): the scheduler must stop counting on it.
			why = append(why, fmt.Sprintf("holder %s: this worker, which does not hold it", addr))
			if s.store != nil {
				s.out.pushMissing(key)
			}
			continue
		}
		b, err := p.peers.fetch(ctx, addr, key, d.GetSize())
		if err == nil {
			p.fetched.add(len(b))
			return b, nil
		}
		why = append(why, fmt.Sprintf("holder %s: %s", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, &TaskError{Type: "tg.FetchFailed", Message: fmt.Sprintf("input '%s' (%d bytes): %s", key, d.GetSize(), strings.Join(why, "; "))}
}

// peerConns are the connections to data services ("host:port"), made on
// first use and kept until close. Safe for concurrent use.
type peerConns struct {
	creds  credentials.TransportCredentials
	maxMsg int

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // nil once closed
}

func newPeerConns(creds credentials.TransportCredentials, maxMsg int) *peerConns {
	return &peerConns{creds: creds, maxMsg: maxMsg, conns: make(map[string]*grpc.ClientConn)}
}

// get returns the (lazily connecting) connection to a holder.
func (pc *peerConns) get(addr string) (*grpc.ClientConn, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if c := pc.conns[addr]; c != nil {
		return c, nil
	}
	if pc.conns == nil {
		return nil, errors.New("the connections to holders are closed")
	}
	c, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(pc.creds),
		grpc.WithUserAgent(userAgent),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(pc.maxMsg)))
	if err != nil {
		return nil, err
	}
	pc.conns[addr] = c
	return c, nil
}

// close closes every connection; later fetches fail.
func (pc *peerConns) close() {
	pc.mu.Lock()
	conns := pc.conns
	pc.conns = nil
	pc.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// fetch reads key from the data service at addr and checks it: want is
// the size the scheduler recorded (0: take the holder's).
func (pc *peerConns) fetch(ctx context.Context, addr, key string, want uint64) ([]byte, error) {
	conn, err := pc.get(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewDataServiceClient(conn).Fetch(ctx, &pb.FetchRequest{Key: key})
	if err != nil {
		return nil, errors.New(statusText(err))
	}
	var a *assembly
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errors.New(statusText(err))
		}
		if k := c.GetKey(); k != "" && k != key {
			return nil, fmt.Errorf("it sent a chunk of '%s'", k)
		}
		if a == nil {
			if want > 0 && c.GetSize() != want {
				return nil, fmt.Errorf("it holds %d bytes, not %d", c.GetSize(), want)
			}
			a = newAssembly(c.GetSize())
		}
		if err := a.add(c); err != nil {
			return nil, err
		}
	}
	switch {
	case a == nil:
		return nil, errors.New("it ended the call without a chunk")
	case !a.done():
		return nil, fmt.Errorf("it ended the call after %d of %d bytes", len(a.buf), a.size)
	}
	return a.buf, nil
}
