// SPDX-License-Identifier: Apache-2.0

// store.go: the results a worker's session holds (those larger than the
// scheduler's inline limit), in least recently used order, each either in
// memory or spilled to a file (the memory manager, memory.go, moves them).
// A spilled result is read back from its file: a chunk at a time for a
// Fetch or an upload, whole for a task on this worker that uses it.
//
// Readers hold a reference: a spill file stays open while a Fetch or an
// upload still reads it, even after the scheduler freed the key (an upload
// asked for in the same message as its free still goes out); its name is
// removed from the spill directory at once.

package taskgrid

import (
	"container/list"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// spillFile is a held result's bytes on disk. refs: the store's own
// reference and one per reader; the file is closed when the last goes.
type spillFile struct {
	f    *os.File
	path string
	refs atomic.Int64
	gone atomic.Bool // unlinked
}

// writeSpill writes data to a new file at path, kept open for reading.
func writeSpill(path string, data []byte) (*spillFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	sf := &spillFile{f: f, path: path}
	sf.refs.Store(1)
	return sf, nil
}

func (sf *spillFile) ref() { sf.refs.Add(1) }

// unref drops a reference; the last one closes the file.
func (sf *spillFile) unref() {
	if sf.refs.Add(-1) == 0 {
		sf.f.Close()
	}
}

// drop is the store's release: the name goes now, the file with its last
// reader.
func (sf *spillFile) drop() {
	if !sf.gone.Swap(true) {
		os.Remove(sf.path)
	}
	sf.unref()
}

// heldResult is one held result, as a reader sees it: its bytes in memory
// (never modified) or in a spill file. A reader that got it from
// store.get calls release when done.
type heldResult struct {
	data  []byte // nil when spilled
	codec string
	size  int
	file  *spillFile // non-nil when spilled
}

// read returns the bytes [off, off+n) (fewer at the end).
func (h heldResult) read(off, n int) ([]byte, error) {
	n = max(min(n, h.size-off), 0)
	if h.file == nil {
		return h.data[off : off+n], nil
	}
	buf := make([]byte, n)
	if _, err := h.file.f.ReadAt(buf, int64(off)); err != nil && !(err == io.EOF && n == 0) {
		return nil, fmt.Errorf("reading %d bytes at offset %d of the spill file %s: %w", n, off, h.file.path, err)
	}
	return buf, nil
}

// whole returns all the bytes (read back from the file when spilled).
func (h heldResult) whole() ([]byte, error) {
	if h.file == nil {
		return h.data, nil
	}
	return h.read(0, h.size)
}

// release ends a reader's use of h.
func (h heldResult) release() {
	if h.file != nil {
		h.file.unref()
	}
}

// storeEntry is a store's element in its LRU list.
type storeEntry struct {
	key string
	id  uint64 // tells a rerun's entry from the one it replaced
	h   heldResult
}

// store holds one session's results. Safe for concurrent use.
type store struct {
	mu      sync.Mutex
	m       map[string]*list.Element // of *storeEntry
	lru     list.List                // front: least recently used
	nextID  uint64
	memory  uint64 // bytes of results in memory
	spilled uint64 // bytes of results in spill files
	closed  bool
	// changed (the memory manager's wake-up) is called after every put
	// and free; set before the store is used.
	changed func()
	// notify (the session's outbox) is poked when a memory report should
	// go out now; set before the store is used.
	notify func()
}

func newStore() *store { return &store{m: make(map[string]*list.Element)} }

func (s *store) poke() {
	if s.changed != nil {
		s.changed()
	}
}

// put keeps a result (replacing one of the same key); false once closed.
func (s *store) put(key string, data []byte, codec string) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.unlinkLocked(key)
	s.nextID++
	e := &storeEntry{key: key, id: s.nextID, h: heldResult{data: data, codec: codec, size: len(data)}}
	s.m[key] = s.lru.PushBack(e)
	s.memory += uint64(len(data))
	s.mu.Unlock()
	s.poke()
	return true
}

// get returns key's result, now the most recently used, with a reader's
// reference: call release when done.
func (s *store) get(key string) (heldResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el := s.m[key]
	if el == nil {
		return heldResult{}, false
	}
	s.lru.MoveToBack(el)
	h := el.Value.(*storeEntry).h
	if h.file != nil {
		h.file.ref()
	}
	return h, true
}

// unlinkLocked removes key (mu held).
func (s *store) unlinkLocked(key string) {
	el := s.m[key]
	if el == nil {
		return
	}
	e := s.lru.Remove(el).(*storeEntry)
	delete(s.m, key)
	if e.h.file != nil {
		s.spilled -= uint64(e.h.size)
		e.h.file.drop()
	} else {
		s.memory -= uint64(e.h.size)
	}
}

// free drops keys; unknown ones are ignored.
func (s *store) free(keys []string) {
	s.mu.Lock()
	for _, k := range keys {
		s.unlinkLocked(k)
	}
	s.mu.Unlock()
	s.poke()
}

// close drops everything; later puts are refused.
func (s *store) close() {
	s.mu.Lock()
	for len(s.m) > 0 {
		s.unlinkLocked(s.lru.Front().Value.(*storeEntry).key)
	}
	s.closed = true
	s.mu.Unlock()
	s.poke()
}

// usage is the bytes held in memory and spilled.
func (s *store) usage() (memory, spilled uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.memory, s.spilled
}

// oldest is the least recently used result still in memory: its key, the
// entry's id and its bytes.
func (s *store) oldest() (key string, id uint64, data []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for el := s.lru.Front(); el != nil; el = el.Next() {
		if e := el.Value.(*storeEntry); e.h.file == nil {
			return e.key, e.id, e.h.data, true
		}
	}
	return "", 0, nil, false
}

// spilledTo puts f in place of the bytes of entry id of key, keeping its
// place in the LRU order; false (f dropped) when that entry is gone or
// the store closed.
func (s *store) spilledTo(key string, id uint64, f *spillFile) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	el := s.m[key]
	if el == nil || el.Value.(*storeEntry).id != id || el.Value.(*storeEntry).h.file != nil {
		f.drop()
		return false
	}
	e := el.Value.(*storeEntry)
	e.h.data, e.h.file = nil, f
	s.memory -= uint64(e.h.size)
	s.spilled += uint64(e.h.size)
	return true
}
