// SPDX-License-Identifier: Apache-2.0

// chunks_test.go: the client's Gather of results that arrive in chunks
// (GatherRequest.chunked), against a fake Scheduler in grpc-go: chunks of
// several keys interleaved over several messages are reassembled; a bad
// CRC-32, a gap or a chunk past the size fails that key only, naming it; a
// holder lost mid-way ends the key with its error; a stream that ends
// mid-result is an error naming the key.

package taskgrid_test

import (
	"bytes"
	"errors"
	"hash/crc32"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	taskgrid "github.com/taskgrid/taskgrid/bindings/go"
	pb "github.com/taskgrid/taskgrid/bindings/go/taskgridpb"
)

// chunkSched answers Gather with a script of responses per first key.
type chunkSched struct {
	pb.UnimplementedSchedulerServer
	script  map[string][]*pb.GatherResponse
	chunked atomic.Bool // every request asked for chunks
	calls   atomic.Int32
}

func (s *chunkSched) Gather(req *pb.GatherRequest, stream pb.Scheduler_GatherServer) error {
	s.calls.Add(1)
	if !req.GetChunked() {
		s.chunked.Store(false)
	}
	for _, r := range s.script[req.GetKeys()[0]] {
		if err := stream.Send(r); err != nil {
			return err
		}
	}
	return nil
}

func memHeader(key string, size int) *pb.TaskResult {
	return &pb.TaskResult{Key: key, State: pb.TaskState_TASK_STATE_MEMORY, Codec: "raw", Size: uint64(size), Attempt: 1}
}

// chunksOf cuts data into chunks of n bytes.
func chunksOf(key string, data []byte, n int) []*pb.DataChunk {
	var out []*pb.DataChunk
	for off := 0; off < len(data); off += n {
		end := min(off+n, len(data))
		out = append(out, &pb.DataChunk{Key: key, Offset: uint64(off), Data: data[off:end], Size: uint64(len(data)),
			Codec: "raw", Crc32: crc32.ChecksumIEEE(data[off:end])})
	}
	return out
}

func TestGatherReassemblesChunks(t *testing.T) {
	big, big2 := pattern(3_000_000), bytes.Repeat([]byte("xyz"), 800_000)
	cb, cb2 := chunksOf("big", big, 1<<20), chunksOf("big2", big2, 1<<20)
	bad := chunksOf("bad", pattern(2_500_000), 1<<20)
	bad[1].Crc32 ^= 1
	gap := chunksOf("gap", pattern(2_500_000), 1<<20)
	past := chunksOf("past", pattern(1000), 1000)
	past[0].Size = 10 // says 10 bytes, carries 1000
	lost := chunksOf("lost", pattern(2_000_000), 1<<20)
	s := &chunkSched{script: map[string][]*pb.GatherResponse{
		"big": {
			{Results: []*pb.TaskResult{memHeader("big", len(big)), memHeader("big2", len(big2)),
				{Key: "small", State: pb.TaskState_TASK_STATE_MEMORY, Codec: "json", Data: []byte("42"), Size: 2},
				memHeader("bad", 2_500_000), memHeader("gap", 2_500_000), memHeader("past", 10), memHeader("lost", 2_000_000),
				{Key: "empty", State: pb.TaskState_TASK_STATE_MEMORY, Codec: "raw"}}},
			{Chunks: []*pb.DataChunk{cb[0], cb2[0], bad[0], gap[0], lost[0]}},
			{Chunks: []*pb.DataChunk{cb2[1], cb[1], bad[1], gap[2], past[0]}},
			{Results: []*pb.TaskResult{{Key: "lost", State: pb.TaskState_TASK_STATE_ERRED,
				Error: &pb.TaskError{Type: "tg.DataLost", Message: "the result was held only on worker w1, which was lost"}}},
				Chunks: []*pb.DataChunk{cb[2], bad[2], cb2[2], lost[1]}},
		},
		"short": {
			{Results: []*pb.TaskResult{memHeader("short", 3_000_000)}},
			{Chunks: chunksOf("short", pattern(3_000_000), 1<<20)[:2]},
		},
	}}
	s.chunked.Store(true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterSchedulerServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	ctx := testContext(t)
	c := dial(t, "tcp://"+lis.Addr().String())
	keys := []string{"big", "big2", "small", "bad", "gap", "past", "lost", "empty"}
	fs := make(map[string]*taskgrid.Future)
	var all []*taskgrid.Future
	for _, k := range keys {
		fs[k] = c.Future(k)
		all = append(all, fs[k])
	}
	_ = c.Gather(ctx, all...)
	if !s.chunked.Load() {
		t.Error("Gather did not ask for chunks")
	}
	for k, want := range map[string][]byte{"big": big, "big2": big2, "small": []byte("42"), "empty": {}} {
		got, err := fs[k].Result(ctx)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", k, len(got), err, len(want))
		}
	}
	if fs["small"].Codec() != "json" || fs["big"].Codec() != "raw" {
		t.Errorf("codecs %q, %q", fs["small"].Codec(), fs["big"].Codec())
	}
	for k, want := range map[string]string{"bad": "CRC-32 mismatch in the chunk at offset 1048576", "gap": "offset 2097152 where offset 1048576 was due",
		"past": "runs past the size, 10 bytes", "lost": "held only on worker w1"} {
		_, err := fs[k].Result(ctx)
		var te *taskgrid.TaskError
		if !errors.As(err, &te) || te.Key != k || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a TaskError of %q saying %q", k, err, k, want)
			continue
		}
		if k != "lost" && (te.Type != "tg.DataCorrupt" || !strings.Contains(te.Message, `"`+k+`"`)) {
			t.Errorf("%s: type %q, message %q: want tg.DataCorrupt naming the key", k, te.Type, te.Message)
		}
	}

	err = c.Gather(ctx, c.Future("short"))
	if err == nil || !strings.Contains(err.Error(), `after 2097152 of the 3000000 bytes of "short"`) {
		t.Errorf("a stream ending mid-result: %v", err)
	}
}
