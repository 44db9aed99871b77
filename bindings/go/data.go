// SPDX-License-Identifier: Apache-2.0

// data.go: the worker's data plane: the gRPC server for DataService.Fetch
// that serves the results it holds (those larger than the scheduler's
// inline limit; the store is store.go, its memory manager memory.go) to
// other workers, the connections to other workers' data services, and the
// counters logged when Run ends.
//
// One data plane per Run. The store belongs to the worker's session with
// the scheduler: it is made when a session starts and dropped when it ends
// (to the scheduler a reconnect is a new worker, whose predecessor's
// results are lost).
//
// Over mutual TLS (a tls:// scheduler address) the service presents the
// worker's certificate, requires a client certificate signed by the
// cluster CA, and answers only certificates with the role "worker"
// (role.go), and "client" too with WithDataClients (clients fetching
// directly; never "admin"). As a client of other workers' services, the
// worker verifies the holder's certificate against the cluster CA and
// requires the worker role too; it does not match host names, since
// worker certificates are issued for a role, not for a host.

package taskgrid

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// chunkMax is the largest DataChunk.data (TG_PROTO_CHUNK_MAX).
const chunkMax = 1 << 20

// DataCount is a number of items and their bytes.
type DataCount struct {
	N     uint64
	Bytes uint64
}

// DataStats counts what a worker's data plane did since Run started, over
// all its sessions.
type DataStats struct {
	Held     DataCount // results kept in the store instead of sent inline
	Served   DataCount // results sent to other workers (DataService.Fetch)
	Fetched  DataCount // inputs fetched from other workers
	Local    DataCount // inputs found in this worker's own store
	Uploaded DataCount // results sent up to the scheduler (for a Gather)
}

type counter struct{ n, bytes atomic.Uint64 }

func (c *counter) add(n int) { c.addN(1, n) }

// addN counts `count` items of `n` bytes in all.
func (c *counter) addN(count, n int) {
	c.n.Add(uint64(count))
	c.bytes.Add(uint64(n))
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (c *counter) get() DataCount { return DataCount{c.n.Load(), c.bytes.Load()} }

// dataPlane is a worker's data service and the state its sessions share.
type dataPlane struct {
	w         *Worker // the worker that runs it
	addr      string  // advertised; "" when there is no data service
	useTLS    bool
	srv       *grpc.Server
	serveDone chan struct{} // closed when srv.Serve returned
	peers     *peerConns
	maxMsg    int
	clients   bool // the client role may fetch too (WithDataClients)

	mem *memoryManager // nil without a data service

	mu  sync.Mutex
	cur *store // the current session's store; nil between sessions

	held, served, fetched, local, uploaded counter
}

// newDataPlane starts the worker's data service (unless it is disabled)
// and prepares the credentials for fetching from peers.
func newDataPlane(w *Worker) (*dataPlane, error) {
	target, useTLS, err := parseAddress(w.address)
	if err != nil {
		return nil, err
	}
	p := &dataPlane{w: w, useTLS: useTLS, maxMsg: w.cfg.maxMessage, clients: w.cfg.dataClients}
	var serverCreds credentials.TransportCredentials
	peerCreds := insecure.NewCredentials()
	if useTLS && w.cfg.security != nil {
		pool, pair, err := w.cfg.security.material()
		if err != nil {
			return nil, err
		}
		if pair != nil {
			serverCreds = credentials.NewTLS(serverTLS(pool, pair))
		}
		peerCreds = credentials.NewTLS(peerTLS(pool, pair, ""))
	}
	p.peers = newPeerConns(peerCreds, p.maxMsg)
	// Checked even without a data service, which holds nothing to manage.
	mem, err := newMemoryManager(w.cfg.memory, p, w.cfg.logger)
	if err != nil {
		return nil, err
	}
	if w.cfg.dataListen == DataNone {
		if w.cfg.dataClients {
			return nil, errors.New("taskgrid: worker: WithDataClients needs a data service (it was turned off with WithDataListen(\"none\"))")
		}
		return p, nil
	}
	p.mem = mem
	if useTLS && serverCreds == nil {
		return nil, errors.New("taskgrid: worker: the data service over TLS needs the worker's certificate and key (Security.CertFile and KeyFile), or WithDataListen(\"none\")")
	}
	listen := w.cfg.dataListen
	if listen == "" {
		listen = "0.0.0.0:0"
		if host, _, _ := net.SplitHostPort(target); isLoopback(host) {
			listen = "127.0.0.1:0"
		}
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("taskgrid: worker: data service: listen on %s: %w", listen, err)
	}
	p.addr, err = advertised(w.cfg.dataAddress, listen, target, lis.Addr().(*net.TCPAddr).Port)
	if err != nil {
		lis.Close()
		return nil, err
	}
	opts := []grpc.ServerOption{grpc.MaxSendMsgSize(p.maxMsg), grpc.MaxRecvMsgSize(1 << 20)}
	if serverCreds != nil {
		opts = append(opts, grpc.Creds(serverCreds))
	}
	p.mem.start()
	p.srv = grpc.NewServer(opts...)
	pb.RegisterDataServiceServer(p.srv, &dataService{p: p})
	p.serveDone = make(chan struct{})
	go func() {
		defer close(p.serveDone)
		_ = p.srv.Serve(lis)
	}()
	return p, nil
}

// isLoopback reports whether host is a loopback literal.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// advertised is the data address to register: explicit (its port filled
// in when missing or 0), else the listen host with the bound port; for all
// interfaces, the IP address of the route to the scheduler at target
// ("HOST:PORT", see routeIP), else the host name.
func advertised(explicit, listen, target string, port int) (string, error) {
	if explicit != "" {
		host, p, err := net.SplitHostPort(explicit)
		if err != nil {
			host, p = explicit, ""
		}
		if host == "" {
			return "", fmt.Errorf("taskgrid: worker: data address %q has no host", explicit)
		}
		if p == "" || p == "0" {
			p = fmt.Sprint(port)
		}
		return net.JoinHostPort(host, p), nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("taskgrid: worker: data listen address %q is not HOST:PORT", listen)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if route, ok := routeIP(target); ok {
			host = route
		} else if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("taskgrid: worker: data address: %w (give it with WithDataAddress)", err)
		}
	}
	return net.JoinHostPort(host, fmt.Sprint(port)), nil
}

// routeIP is the local IP address of the route to the scheduler at target
// ("HOST:PORT"), as Dask's get_ip finds it: a UDP socket connected to it,
// which sends nothing and only picks the route, and its local address.
// false when target does not resolve, there is no route, or the address
// is of no use to peers on other hosts (loopback, IPv6 link-local,
// IPv4-mapped).
func routeIP(target string) (string, bool) {
	addr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return "", false
	}
	conn, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		return "", false
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
	if local.IsLoopback() || local.IsUnspecified() || local.Is4In6() ||
		local.Is6() && local.IsLinkLocalUnicast() {
		return "", false
	}
	return local.WithZone("").String(), true
}

// serverTLS: the data service presents the worker's certificate and
// requires a client certificate of the cluster CA.
func serverTLS(pool *x509.CertPool, pair *tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{*pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}
}

// peerTLS: fetching from a holder verifies its certificate against the
// cluster CA (for any key usage) and requires the worker role; host names
// are not matched, but the certificate must name `name` when it is not ""
// (clients ask for the workers' fixed TLS name, workerTLSName).
func peerTLS(pool *x509.CertPool, pair *tls.Certificate, name string) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified by VerifyConnection instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the holder sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if err != nil {
				return fmt.Errorf("the holder's certificate: %w", err)
			}
			if role, why := certRole(leaf); role != roleWorker {
				return fmt.Errorf("the holder's certificate has %s, not the worker role", describeRole(role, why))
			}
			return nil
		},
	}
	if pair != nil {
		cfg.Certificates = []tls.Certificate{*pair}
	}
	return cfg
}

func describeRole(role, why string) string {
	if role == "" {
		return "no role (" + why + ")"
	}
	return "role '" + role + "'"
}

// setStore makes s the store that Fetch and local inputs read, and the
// one the memory manager watches.
func (p *dataPlane) setStore(s *store) {
	s.changed = p.mem.poke
	p.mu.Lock()
	p.cur = s
	p.mu.Unlock()
}

// dropStore ends s (its session ended).
func (p *dataPlane) dropStore(s *store) {
	p.mu.Lock()
	if p.cur == s {
		p.cur = nil
	}
	p.mu.Unlock()
	s.close()
}

// current is the current session's store (nil between sessions).
func (p *dataPlane) current() *store {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// lookup finds key in the current store; release the result when done.
func (p *dataPlane) lookup(key string) (heldResult, bool) {
	p.mu.Lock()
	s := p.cur
	p.mu.Unlock()
	if s == nil {
		return heldResult{}, false
	}
	return s.get(key)
}

// close stops the data service (letting Fetches in progress end for a
// moment) and closes the connections to peers.
func (p *dataPlane) close() {
	defer p.mem.close() // last: a Fetch may still read a spill file
	p.peers.close()
	if p.srv == nil {
		return
	}
	stopped := make(chan struct{})
	go func() {
		p.srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(time.Second):
		p.srv.Stop()
	}
	<-p.serveDone
}

func (p *dataPlane) stats() DataStats {
	return DataStats{p.held.get(), p.served.get(), p.fetched.get(), p.local.get(), p.uploaded.get()}
}

// logStats writes the exit line of the counters.
func (p *dataPlane) logStats(log *slog.Logger) {
	s := p.stats()
	log.Info(fmt.Sprintf("data: held %d (%d bytes), served %d (%d bytes), fetched %d (%d bytes), local %d (%d bytes), uploaded %d (%d bytes)",
		s.Held.N, s.Held.Bytes, s.Served.N, s.Served.Bytes, s.Fetched.N, s.Fetched.Bytes,
		s.Local.N, s.Local.Bytes, s.Uploaded.N, s.Uploaded.Bytes))
}

// DataAddress is the address the worker registered for its data service:
// "" without one, or before Run started it.
func (w *Worker) DataAddress() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.data == nil {
		return ""
	}
	return w.data.addr
}

// DataStats returns the counters of the worker's data plane (zero before
// Run).
func (w *Worker) DataStats() DataStats {
	w.mu.Lock()
	p := w.data
	w.mu.Unlock()
	if p == nil {
		return DataStats{}
	}
	return p.stats()
}

// dataService answers DataService.Fetch from the current store.
type dataService struct {
	pb.UnimplementedDataServiceServer
	p *dataPlane
}

func (d *dataService) Fetch(req *pb.FetchRequest, stream pb.DataService_FetchServer) error {
	if d.p.useTLS {
		if err := checkFetchRole(stream, d.p.clients); err != nil {
			return err
		}
	}
	key := req.GetKey()
	h, ok := d.p.lookup(key)
	if !ok {
		return status.Errorf(codes.NotFound, "no result '%s' on worker %s", key, d.p.w.Name())
	}
	defer h.release()
	err := sendChunks(h, key, func(c *pb.DataChunk) error { return stream.Send(c) })
	if err != nil {
		return err
	}
	d.p.served.add(h.size)
	return nil
}

// checkFetchRole admits only client certificates with the worker role,
// and with the client role when clients may fetch (WithDataClients).
func checkFetchRole(stream grpc.ServerStream, clients bool) error {
	need := "DataService.Fetch needs the worker role"
	if clients {
		need = "DataService.Fetch needs the worker or client role"
	}
	pr, _ := peer.FromContext(stream.Context())
	var info credentials.TLSInfo
	ok := false
	if pr != nil {
		info, ok = pr.AuthInfo.(credentials.TLSInfo)
	}
	if !ok || len(info.State.PeerCertificates) == 0 {
		return status.Error(codes.PermissionDenied, need+"; the call has no client certificate")
	}
	role, why := certRole(info.State.PeerCertificates[0])
	switch {
	case role == roleWorker || clients && role == roleClient:
		return nil
	case role == roleClient:
		return status.Errorf(codes.PermissionDenied, "%s; this certificate has %s (the worker's operator can admit clients with --data-clients)", need, describeRole(role, why))
	}
	return status.Errorf(codes.PermissionDenied, "%s; this certificate has %s", need, describeRole(role, why))
}

// sendChunks cuts a result into chunks of at most chunkMax bytes (one
// empty chunk for an empty result), each with its CRC-32, and hands them
// to send in order.
func sendChunks(h heldResult, key string, send func(*pb.DataChunk) error) error {
	for off := 0; ; {
		n := min(chunkMax, h.size-off)
		c, err := newChunk(h, key, off, n, 0)
		if err != nil {
			return status.Errorf(codes.Internal, "result '%s': %v", key, err)
		}
		if err := send(c); err != nil {
			return err
		}
		if off += n; off >= h.size {
			return nil
		}
	}
}

// newChunk is the chunk of h's bytes [off, off+n) (read from its spill
// file when spilled).
func newChunk(h heldResult, key string, off, n int, upload uint64) (*pb.DataChunk, error) {
	data, err := h.read(off, n)
	if err != nil {
		return nil, err
	}
	return &pb.DataChunk{
		Key: key, Offset: uint64(off), Data: data, Size: uint64(h.size),
		Codec: h.codec, Crc32: crc32.ChecksumIEEE(data), Upload: upload,
	}, nil
}

// assembly rebuilds a result from its chunks, checking each: the offsets
// follow each other, every chunk names the same size, the CRC-32 matches,
// and nothing runs past the size.
type assembly struct {
	size uint64
	buf  []byte
}

// preallocMax bounds what an assembly reserves up front for the size a
// sender announced; beyond it the buffer grows as bytes arrive.
const preallocMax = 256 << 20

func newAssembly(size uint64) *assembly {
	return &assembly{size: size, buf: make([]byte, 0, min(size, preallocMax))}
}

func (a *assembly) add(c *pb.DataChunk) error {
	got := uint64(len(a.buf))
	switch {
	case c.GetOffset() != got:
		return fmt.Errorf("a chunk at offset %d where offset %d was due", c.GetOffset(), got)
	case c.GetSize() != a.size:
		return fmt.Errorf("the chunk at offset %d gives the size as %d bytes, not %d", got, c.GetSize(), a.size)
	case uint64(len(c.GetData())) > a.size-got:
		return fmt.Errorf("the chunk at offset %d (%d bytes) runs past the size, %d bytes", got, len(c.GetData()), a.size)
	}
	if crc := crc32.ChecksumIEEE(c.GetData()); crc != c.GetCrc32() {
		return fmt.Errorf("CRC-32 mismatch in the chunk at offset %d (%d bytes): computed %08x, the chunk says %08x", got, len(c.GetData()), crc, c.GetCrc32())
	}
	a.buf = append(a.buf, c.GetData()...)
	return nil
}

func (a *assembly) done() bool { return uint64(len(a.buf)) == a.size }

// statusText is a call error as "CODE: message" (gRPC's canonical code
// names, e.g. "UNAVAILABLE: connection refused").
func statusText(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	return codeName(st.Code()) + ": " + st.Message()
}

func codeName(c codes.Code) string {
	if c == codes.Canceled {
		return "CANCELLED"
	}
	var b strings.Builder
	prev := ' '
	for _, r := range c.String() {
		if r >= 'A' && r <= 'Z' && prev >= 'a' && prev <= 'z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
		prev = r
	}
	return strings.ToUpper(b.String())
}
