// SPDX-License-Identifier: Apache-2.0

// data_test.go: the Go worker's data plane against a fake scheduler (a
// WorkerLink server in grpc-go, in this process): results over the inline
// limit are held, served by DataService.Fetch in checked chunks, uploaded
// as WorkerMessage.chunks, freed and dropped with the session; held inputs
// come from the worker's own store, from a second worker, or fail with
// tg.FetchFailed; over mutual TLS only the worker role may fetch.

package taskgrid_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	"github.com/taskgrid/taskgrid/bindings/go/internal/cluster"
	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// fakeSched is a WorkerLink server that hands each worker's stream to the
// test (fakeSched.next) and sends inline_limit to workers with a data
// address, as the scheduler does.
type fakeSched struct {
	pb.UnimplementedWorkerLinkServer
	addr        string
	scheme      string // tcp:// or tls://
	inlineLimit uint64
	links       chan *fakeLink
}

// fakeLink is one worker's stream as the test sees it.
type fakeLink struct {
	reg  *pb.Register
	name string
	out  chan *pb.SchedulerMessage
	in   chan *pb.WorkerMessage // closed when the stream ends
	stop chan struct{}          // close to end the stream
	once sync.Once
	// Results read but not asked for yet (by the test's goroutine only).
	results map[string]*pb.TaskResult
}

func startFakeSched(t *testing.T, inlineLimit uint64, creds credentials.TransportCredentials) *fakeSched {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(64 << 20)}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	srv := grpc.NewServer(opts...)
	f := &fakeSched{addr: lis.Addr().String(), scheme: "tcp://", inlineLimit: inlineLimit, links: make(chan *fakeLink, 16)}
	if creds != nil {
		f.scheme = "tls://"
	}
	pb.RegisterWorkerLinkServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f
}

func (f *fakeSched) Connect(stream pb.WorkerLink_ConnectServer) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	l := &fakeLink{reg: m.GetRegistration(), out: make(chan *pb.SchedulerMessage, 64),
		in: make(chan *pb.WorkerMessage, 4096), stop: make(chan struct{}),
		results: make(map[string]*pb.TaskResult)}
	l.name = l.reg.GetName()
	first := &pb.SchedulerMessage{WorkerName: l.name, HeartbeatMs: 200}
	if l.reg.GetDataAddress() != "" {
		first.InlineLimit = f.inlineLimit
	}
	if err := stream.Send(first); err != nil {
		return err
	}
	f.links <- l
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		defer close(l.in)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			l.in <- m
		}
	}()
	for {
		select {
		case m := <-l.out:
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-l.stop:
			return status.Error(codes.Unavailable, "the fake scheduler ends the stream")
		case <-recvDone:
			return nil
		case <-stream.Context().Done():
			return nil
		}
	}
}

// next waits for the next worker to connect.
func (f *fakeSched) next(t *testing.T) *fakeLink {
	t.Helper()
	select {
	case l := <-f.links:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no worker connected to the fake scheduler")
		return nil
	}
}

func (l *fakeLink) send(m *pb.SchedulerMessage) { l.out <- m }
func (l *fakeLink) end()                        { l.once.Do(func() { close(l.stop) }) }

// collect reads worker messages until done says it has seen enough.
func (l *fakeLink) collect(t *testing.T, done func(m *pb.WorkerMessage) bool) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-l.in:
			if !ok {
				t.Fatal("the worker's stream ended")
			}
			if done(m) {
				return
			}
		case <-timeout:
			t.Fatal("timed out waiting for the worker")
		}
	}
}

// result waits for the result of key (results that arrive meanwhile are
// kept for later calls).
func (l *fakeLink) result(t *testing.T, key string) *pb.TaskResult {
	t.Helper()
	if r := l.results[key]; r != nil {
		delete(l.results, key)
		return r
	}
	l.collect(t, func(m *pb.WorkerMessage) bool {
		for _, x := range m.GetResults() {
			l.results[x.GetKey()] = x
		}
		return l.results[key] != nil
	})
	r := l.results[key]
	delete(l.results, key)
	return r
}

func (l *fakeLink) assign(as ...*pb.Assignment) { l.send(&pb.SchedulerMessage{Assign: as}) }

// dataFuncs: go.bytes(N) makes N bytes (a pattern, so that misplaced
// chunks show); go.deps describes its dependencies as "len:crc,...".
var dataFuncs = map[string]taskgrid.Func{
	"go.bytes": func(_ context.Context, in []byte, _ [][]byte) ([]byte, error) {
		n, err := strconv.Atoi(string(in))
		return pattern(n), err
	},
	"go.deps": func(_ context.Context, _ []byte, deps [][]byte) ([]byte, error) {
		var parts []string
		for _, d := range deps {
			parts = append(parts, fmt.Sprintf("%d:%08x", len(d), crc32.ChecksumIEEE(d)))
		}
		return []byte(strings.Join(parts, ",")), nil
	},
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>12)
	}
	return b
}

func describe(b []byte) string { return fmt.Sprintf("%d:%08x", len(b), crc32.ChecksumIEEE(b)) }

// dataWorker runs a Go worker with dataFuncs for the fake scheduler and
// returns it with its stream.
func dataWorker(t *testing.T, f *fakeSched, name string, opts ...taskgrid.Option) (*taskgrid.Worker, *fakeLink, func()) {
	t.Helper()
	w, stop := goWorker(t, f.scheme+f.addr, dataFuncs, append([]taskgrid.Option{taskgrid.WithName(name), taskgrid.WithNThreads(2)}, opts...)...)
	return w, f.next(t), stop
}

// fetch reads key from a worker's data service, checking every chunk.
func fetch(ctx context.Context, addr, key string, creds credentials.TransportCredentials) ([]byte, []*pb.DataChunk, error) {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	stream, err := pb.NewDataServiceClient(conn).Fetch(ctx, &pb.FetchRequest{Key: key})
	if err != nil {
		return nil, nil, err
	}
	var buf []byte
	var chunks []*pb.DataChunk
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			return buf, chunks, nil
		}
		if err != nil {
			return nil, chunks, err
		}
		chunks = append(chunks, c)
		if c.GetOffset() != uint64(len(buf)) || crc32.ChecksumIEEE(c.GetData()) != c.GetCrc32() || len(c.GetData()) > 1<<20 {
			return nil, chunks, fmt.Errorf("bad chunk at %d (%d bytes)", c.GetOffset(), len(c.GetData()))
		}
		buf = append(buf, c.GetData()...)
	}
}

func bytesTask(key string, n int) *pb.Assignment {
	return &pb.Assignment{Key: key, Func: "go.bytes", Input: []byte(strconv.Itoa(n)), Attempt: 1}
}

// heldDep is an Assignment dep whose bytes are on holders.
func heldDep(key string, size int, holders ...string) *pb.TaskResult {
	return &pb.TaskResult{Key: key, State: pb.TaskState_TASK_STATE_MEMORY, Codec: "raw", Size: uint64(size), Holders: holders}
}

const bigSize = 5_000_000

func TestDataPlaneHoldFetchUploadFree(t *testing.T) {
	f := startFakeSched(t, 64<<10, nil)
	var logBuf cluster.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	defer func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logBuf.String())
		}
	}()
	w, l, stop := dataWorker(t, f, "a", taskgrid.WithLogger(logger))
	if l.reg.GetDataAddress() == "" || l.reg.GetDataAddress() != w.DataAddress() {
		t.Fatalf("registered data address %q, worker says %q", l.reg.GetDataAddress(), w.DataAddress())
	}
	if !strings.HasPrefix(w.DataAddress(), "127.0.0.1:") {
		t.Errorf("data address %q: a loopback scheduler should give 127.0.0.1", w.DataAddress())
	}
	l.assign(bytesTask("big", bigSize), bytesTask("small", 100))
	ctx := testContext(t)
	big, small := l.result(t, "big"), l.result(t, "small")
	if !big.GetHeld() || len(big.GetData()) != 0 || big.GetSize() != bigSize || big.GetCodec() != "raw" ||
		big.GetState() != pb.TaskState_TASK_STATE_MEMORY || big.GetAttempt() != 1 {
		t.Fatalf("big: %v, want held, size %d, no data", big, bigSize)
	}
	if small.GetHeld() || len(small.GetData()) != 100 || small.GetSize() != 100 {
		t.Fatalf("small: held=%v, %d bytes, size %d; want inline", small.GetHeld(), len(small.GetData()), small.GetSize())
	}

	t.Run("fetch", func(t *testing.T) {
		got, chunks, err := fetch(ctx, w.DataAddress(), "big", nil)
		if err != nil || !bytes.Equal(got, pattern(bigSize)) {
			t.Fatalf("fetch big: %d bytes, %v", len(got), err)
		}
		if len(chunks) != 5 || chunks[0].GetSize() != bigSize || chunks[0].GetCodec() != "raw" || chunks[0].GetKey() != "big" {
			t.Errorf("%d chunks (first %v), want 5 of at most 1 MiB naming key, size and codec", len(chunks), chunks[0])
		}
		_, _, err = fetch(ctx, w.DataAddress(), "nope", nil)
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "no result 'nope' on worker a") {
			t.Errorf("fetch of an unknown key: %v, want NOT_FOUND naming key and worker", err)
		}
	})

	t.Run("upload", func(t *testing.T) {
		l.send(&pb.SchedulerMessage{Upload: []*pb.Upload{{Id: 7, Key: "big"}, {Id: 8, Key: "ghost"}}})
		var buf []byte
		var missing []string
		l.collect(t, func(m *pb.WorkerMessage) bool {
			n := 0
			for _, c := range m.GetChunks() {
				if c.GetUpload() != 7 || c.GetKey() != "big" || c.GetOffset() != uint64(len(buf)) ||
					crc32.ChecksumIEEE(c.GetData()) != c.GetCrc32() || len(c.GetData()) > 1<<20 {
					t.Fatalf("bad upload chunk: upload %d, key %q, offset %d (%d expected), %d bytes",
						c.GetUpload(), c.GetKey(), c.GetOffset(), len(buf), len(c.GetData()))
				}
				buf = append(buf, c.GetData()...)
				n += len(c.GetData())
			}
			if n > 4<<20 {
				t.Errorf("one message carries %d bytes of chunks, over 4 MiB", n)
			}
			missing = append(missing, m.GetMissing()...)
			return len(buf) == bigSize && len(missing) > 0
		})
		if !bytes.Equal(buf, pattern(bigSize)) || fmt.Sprint(missing) != "[ghost]" {
			t.Fatalf("upload: %d bytes (equal %v), missing %v", len(buf), bytes.Equal(buf, pattern(bigSize)), missing)
		}
	})

	t.Run("upload ranges", func(t *testing.T) {
		// Two ranges of one id, answered in order with exactly the bytes
		// asked, and one past the end, answered with nothing.
		const from, n = 1<<20 + 3, 5 << 19
		l.send(&pb.SchedulerMessage{Upload: []*pb.Upload{
			{Id: 9, Key: "big", Offset: from, Length: n},
			{Id: 10, Key: "big", Offset: bigSize, Length: 7},
			{Id: 9, Key: "big", Offset: from + n, Length: 100},
		}})
		var buf []byte
		l.collect(t, func(m *pb.WorkerMessage) bool {
			for _, c := range m.GetChunks() {
				if c.GetUpload() != 9 || c.GetOffset() != uint64(from+len(buf)) || c.GetSize() != bigSize ||
					crc32.ChecksumIEEE(c.GetData()) != c.GetCrc32() {
					t.Fatalf("bad range chunk: upload %d, offset %d (%d expected), %d bytes",
						c.GetUpload(), c.GetOffset(), from+len(buf), len(c.GetData()))
				}
				buf = append(buf, c.GetData()...)
			}
			return len(buf) >= n+100
		})
		if !bytes.Equal(buf, pattern(bigSize)[from:from+n+100]) {
			t.Fatalf("ranges: %d bytes, not the %d asked", len(buf), n+100)
		}
	})

	t.Run("local input", func(t *testing.T) {
		l.assign(&pb.Assignment{Key: "use", Func: "go.deps", Attempt: 1, Deps: []*pb.TaskResult{
			heldDep("big", bigSize, "127.0.0.1:1", w.DataAddress()),
			{Key: "small", State: pb.TaskState_TASK_STATE_MEMORY, Data: small.GetData(), Size: 100},
		}})
		r := l.result(t, "use")
		if want := describe(pattern(bigSize)) + "," + describe(pattern(100)); string(r.GetData()) != want {
			t.Fatalf("go.deps = %q (%v), want %q", r.GetData(), r.GetError(), want)
		}
		if s := w.DataStats(); s.Local != (taskgrid.DataCount{N: 1, Bytes: bigSize}) || s.Fetched.N != 0 {
			t.Errorf("stats %+v: want one local hit and no fetch", s)
		}
	})

	t.Run("free", func(t *testing.T) {
		// The worker reads its messages in order: once the task sent
		// after the free is done, the free was applied.
		l.send(&pb.SchedulerMessage{Free: []string{"big", "unknown"}})
		l.assign(bytesTask("after-free", 1))
		l.result(t, "after-free")
		if _, _, err := fetch(ctx, w.DataAddress(), "big", nil); status.Code(err) != codes.NotFound {
			t.Fatalf("fetch after free: %v, want NOT_FOUND", err)
		}
	})

	stop()
	// The ranges end before the result does: their bytes count, not an
	// upload.
	want := fmt.Sprintf("data: held 1 (%d bytes), served 1 (%d bytes), fetched 0 (0 bytes), local 1 (%d bytes), uploaded 1 (%d bytes)",
		bigSize, bigSize, bigSize, bigSize+5<<19+100)
	if !strings.Contains(logBuf.String(), want) {
		t.Errorf("the exit log does not say %q:\n%s", want, logBuf.String())
	}
}

func TestDataPlaneInputsFromPeers(t *testing.T) {
	f := startFakeSched(t, 64<<10, nil)
	a, la, _ := dataWorker(t, f, "a")
	b, lb, _ := dataWorker(t, f, "b")
	la.assign(bytesTask("big", bigSize))
	if r := la.result(t, "big"); !r.GetHeld() {
		t.Fatalf("big not held: %v", r)
	}

	t.Run("fetched from the second holder", func(t *testing.T) {
		lb.assign(&pb.Assignment{Key: "use", Func: "go.deps", Attempt: 1, Deps: []*pb.TaskResult{
			heldDep("big", bigSize, "127.0.0.1:1", a.DataAddress()),
		}})
		r := lb.result(t, "use")
		if want := describe(pattern(bigSize)); string(r.GetData()) != want {
			t.Fatalf("go.deps on b = %q (%v), want %q", r.GetData(), r.GetError(), want)
		}
		if s := b.DataStats(); s.Fetched != (taskgrid.DataCount{N: 1, Bytes: bigSize}) || s.Local.N != 0 {
			t.Errorf("b's stats %+v: want one fetch", s)
		}
		if s := a.DataStats(); s.Served != (taskgrid.DataCount{N: 1, Bytes: bigSize}) {
			t.Errorf("a's stats %+v: want one served", s)
		}
	})

	t.Run("no holder delivers", func(t *testing.T) {
		lb.assign(&pb.Assignment{Key: "fail", Func: "go.deps", Attempt: 1, Deps: []*pb.TaskResult{
			heldDep("gone", 200000, "127.0.0.1:1", a.DataAddress()),
		}})
		r := lb.result(t, "fail")
		e := r.GetError()
		if r.GetState() != pb.TaskState_TASK_STATE_ERRED || e.GetType() != "tg.FetchFailed" {
			t.Fatalf("a dep no holder has: %v, want tg.FetchFailed", r)
		}
		for _, want := range []string{"input 'gone' (200000 bytes)", "holder 127.0.0.1:1: UNAVAILABLE", "holder " + a.DataAddress() + ": NOT_FOUND"} {
			if !strings.Contains(e.GetMessage(), want) {
				t.Errorf("message %q does not say %q", e.GetMessage(), want)
			}
		}
	})

	t.Run("a size that differs is refused", func(t *testing.T) {
		lb.assign(&pb.Assignment{Key: "size", Func: "go.deps", Attempt: 1, Deps: []*pb.TaskResult{
			heldDep("big", bigSize+1, a.DataAddress()),
		}})
		r := lb.result(t, "size")
		if r.GetError().GetType() != "tg.FetchFailed" || !strings.Contains(r.GetError().GetMessage(), "not 5000001") {
			t.Fatalf("a dep with the wrong size: %v", r)
		}
	})

	t.Run("the store ends with the session", func(t *testing.T) {
		la.end()
		la2 := f.next(t) // a reconnects: a new worker to the scheduler
		if la2.reg.GetDataAddress() != a.DataAddress() {
			t.Errorf("after reconnecting a registers %q, want %q", la2.reg.GetDataAddress(), a.DataAddress())
		}
		_, _, err := fetch(testContext(t), a.DataAddress(), "big", nil)
		if status.Code(err) != codes.NotFound {
			t.Fatalf("fetch from the new session: %v, want NOT_FOUND", err)
		}
	})
}

func TestDataPlaneDisabled(t *testing.T) {
	f := startFakeSched(t, 64<<10, nil)
	w, l, _ := dataWorker(t, f, "plain", taskgrid.WithDataListen(taskgrid.DataNone))
	if l.reg.GetDataAddress() != "" || w.DataAddress() != "" {
		t.Fatalf("data address %q / %q, want none", l.reg.GetDataAddress(), w.DataAddress())
	}
	l.assign(bytesTask("big", bigSize))
	if r := l.result(t, "big"); r.GetHeld() || len(r.GetData()) != bigSize || r.GetSize() != bigSize {
		t.Fatalf("without a data service: held=%v, %d bytes", r.GetHeld(), len(r.GetData()))
	}
}

func TestDataAddressOption(t *testing.T) {
	f := startFakeSched(t, 64<<10, nil)
	w, l, _ := dataWorker(t, f, "named", taskgrid.WithDataListen("127.0.0.1:0"), taskgrid.WithDataAddress("localhost"))
	_, port, _ := net.SplitHostPort(w.DataAddress())
	if l.reg.GetDataAddress() != "localhost:"+port || port == "0" {
		t.Fatalf("registered %q, want localhost with the bound port", l.reg.GetDataAddress())
	}
	l.assign(bytesTask("big", 100000))
	l.result(t, "big")
	got, _, err := fetch(testContext(t), l.reg.GetDataAddress(), "big", nil)
	if err != nil || len(got) != 100000 {
		t.Fatalf("fetch through the advertised address: %d bytes, %v", len(got), err)
	}
}

func TestDataServiceOverTLS(t *testing.T) {
	pki := newPKI(t)
	ca := filepath.Join(pki.dir, "ca.pem")
	schedCert, schedKey := pki.issue(t, "scheduler", "scheduler", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	f := startFakeSched(t, 64<<10, serverCreds(t, ca, schedCert, schedKey))
	sec := pki.security(t, "go-worker", "worker")
	w, l, _ := dataWorker(t, f, "a", taskgrid.WithSecurity(sec))
	l.assign(bytesTask("big", 2_000_000))
	if r := l.result(t, "big"); !r.GetHeld() {
		t.Fatalf("big: %v", r)
	}
	ctx := testContext(t)
	peer := func(name, role string) credentials.TransportCredentials {
		cert, key := pki.issue(t, name, role, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		return clientCreds(t, ca, cert, key)
	}

	_, _, err := fetch(ctx, w.DataAddress(), "big", peer("client", "client"))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "DataService.Fetch needs the worker role; this certificate has role 'client'") {
		t.Errorf("a client certificate: %v, want PERMISSION_DENIED naming the role", err)
	}
	got, _, err := fetch(ctx, w.DataAddress(), "big", peer("other-worker", "worker"))
	if err != nil || !bytes.Equal(got, pattern(2_000_000)) {
		t.Errorf("a worker certificate: %d bytes, %v", len(got), err)
	}
	_, _, err = fetch(ctx, w.DataAddress(), "big", clientCreds(t, ca, "", ""))
	if err == nil {
		t.Error("a fetch without a client certificate succeeded")
	}

	// A second Go worker over TLS fetches it as an input.
	_, l2, _ := dataWorker(t, f, "b", taskgrid.WithSecurity(pki.security(t, "go-worker-b", "worker")))
	t.Run("peer over TLS", func(t *testing.T) {
		l2.assign(&pb.Assignment{Key: "use", Func: "go.deps", Attempt: 1, Deps: []*pb.TaskResult{heldDep("big", 2_000_000, w.DataAddress())}})
		if r := l2.result(t, "use"); string(r.GetData()) != describe(pattern(2_000_000)) {
			t.Fatalf("go.deps over TLS = %q (%v)", r.GetData(), r.GetError())
		}
	})
}

func serverCreds(t *testing.T, ca, cert, key string) credentials.TransportCredentials {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: caPool(t, ca)})
}

func clientCreds(t *testing.T, ca, cert, key string) credentials.TransportCredentials {
	t.Helper()
	cfg := &tls.Config{RootCAs: caPool(t, ca), ServerName: "localhost",
		// Worker certificates are issued for a role, not a host: check the
		// chain only.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = c.Verify(x509.VerifyOptions{Roots: caPool(t, ca)})
			return err
		}}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg)
}

func caPool(t *testing.T, ca string) *x509.CertPool {
	b, err := os.ReadFile(ca)
	if err != nil {
		t.Error(err)
		return nil
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Error(errors.New("no CA"))
	}
	return p
}
