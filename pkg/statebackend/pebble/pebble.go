package pebble

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"

	cpebble "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

// Cache is Pebble's block cache; share one per TaskManager (see NewCache).
type Cache = cpebble.Cache

// NewCache returns a block cache of size bytes. Pass it in Options.Cache of
// every backend of a TaskManager and Unref it when the TaskManager stops
// (each open DB holds its own reference).
func NewCache(size int64) *Cache { return cpebble.NewCache(size) }

// SplitBudget divides a TaskManager's state memory budget (bytes) between
// one shared block cache and the memtables of n backends: each backend may
// hold two memtables, and memtables get a quarter of the budget (at least
// 1 MiB each).
func SplitBudget(budget int64, n int) (cacheBytes int64, memTableSize uint64) {
	if n < 1 {
		n = 1
	}
	mt := budget / 4 / int64(2*n)
	if mt < 1<<20 {
		mt = 1 << 20
	}
	cacheBytes = budget - mt*int64(2*n)
	if cacheBytes < 1<<20 {
		cacheBytes = 1 << 20
	}
	return cacheBytes, uint64(mt)
}

// Options configure a Pebble backend.
type Options struct {
	statebackend.Options
	// Cache is the shared block cache. Default: a private cache of CacheSize.
	Cache *Cache
	// CacheSize is used when Cache is nil. Default 64 MiB.
	CacheSize int64
	// MemTableSize is the size of one memtable. Default 16 MiB.
	MemTableSize uint64
	// Compression of SST blocks: "snappy" (default), "none", "zstd",
	// "minlz", "fastest", "balanced".
	Compression string
	// BatchSize is the write-batch size at which buffered writes are
	// committed. Default 1 MiB.
	BatchSize int
	// WAL enables Pebble's write-ahead log (default off: snapshots are the
	// durable copy of state).
	WAL bool
	// Logger receives Pebble's messages (informational ones at debug
	// level). Default: slog.Default().
	Logger *slog.Logger
}

func (o *Options) compression() (func() cpebble.DBCompressionSettings, error) {
	var cs cpebble.DBCompressionSettings
	switch o.Compression {
	case "", "snappy":
		cs = cpebble.UniformDBCompressionSettings(sstable.SnappyCompression)
	case "none":
		cs = cpebble.DBCompressionNone
	case "zstd":
		cs = cpebble.UniformDBCompressionSettings(sstable.ZstdCompression)
	case "minlz":
		cs = cpebble.UniformDBCompressionSettings(sstable.MinLZCompression)
	case "fastest":
		cs = cpebble.DBCompressionFastest
	case "balanced":
		cs = cpebble.DBCompressionBalanced
	default:
		return nil, fmt.Errorf("pebble state backend: unknown compression %q: use snappy, none, zstd, minlz, fastest or balanced", o.Compression)
	}
	return func() cpebble.DBCompressionSettings { return cs }, nil
}

// Open opens (creating if needed) the backend's DB in dir. Reopening a dir
// finds the states and timers written before the last Flush or Close.
func Open(dir string, opts Options) (*statebackend.Engine, error) {
	if dir == "" {
		return nil, errors.New("pebble state backend: empty directory: pass the subtask's data dir")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pebble state backend: create %s: %w", dir, err)
	}
	comp, err := opts.compression()
	if err != nil {
		return nil, err
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 64 << 20
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = 16 << 20
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 1 << 20
	}
	po := &cpebble.Options{
		MemTableSize: opts.MemTableSize,
		DisableWAL:   !opts.WAL,
		Merger:       listMerger,
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := newFault(dir, opts.Logger.With("component", "pebble-state", "dir", dir), po)
	cache := opts.Cache
	if cache == nil {
		cache = cpebble.NewCache(opts.CacheSize)
		defer cache.Unref() // the DB holds its own reference
	}
	po.Cache = cache
	po.ApplyCompressionSettings(comp)
	db, fsCloser, err := openDB(dir, po)
	if err != nil {
		return nil, openError("open", dir, f.check(err))
	}
	s := &store{db: db, fsCloser: fsCloser, b: db.NewIndexedBatch(), limit: opts.BatchSize, noWAL: !opts.WAL, fault: f}
	return newEngine(s, opts.Options)
}

// newEngine wraps s; if Pebble reported a fatal error while the DB opened
// (or NewEngine's read of the saved registry failed), s is closed.
func newEngine(s *store, opts statebackend.Options) (*statebackend.Engine, error) {
	e, err := statebackend.NewEngine(s, opts)
	if err == nil {
		err = s.fault.get()
	}
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return e, nil
}

const (
	timerPrefix = 0xF0
	metaPrefix  = 0xFE
	timerIndex  = 0xFFFF
	headSize    = 256
)

// timerHead caches the smallest timers of a domain: when loaded, keys holds
// exactly the timers below bound (all timers if exhausted), sorted.
type timerHead struct {
	loaded, exhausted bool
	keys              [][]byte
	bound             []byte
}

type store struct {
	db       *cpebble.DB
	fsCloser io.Closer // of the DB's file system, closed after the DB
	b        *cpebble.Batch
	limit    int
	noWAL    bool
	iters    int
	kbuf     []byte
	vbuf     []byte
	rbuf     []byte
	heads    [2]timerHead
	closed   bool
	// fault is the first fatal error Pebble reported (corruption found,
	// Fatalf): once set, commit refuses to write, reads return it, and
	// Close does not flush.
	fault *fault
	mx    storeMetrics // metrics.go
}

func (s *store) cellPrefix(dst []byte, c *statebackend.Cell) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(c.KeyGroup))
	dst = binary.BigEndian.AppendUint16(dst, c.State)
	return statebackend.AppendCellKey(dst, c.Key, c.Namespace)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := slices.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xFF: no upper bound
}

func (s *store) maybeCommit() error {
	if s.b.Len() < s.limit || s.iters > 0 {
		return nil
	}
	return s.commit()
}

func (s *store) commit() error {
	if err := s.fault.get(); err != nil {
		return err
	}
	if s.b.Empty() {
		return nil
	}
	if err := s.b.Commit(cpebble.NoSync); err != nil {
		return s.fault.check(fmt.Errorf("commit state batch: %w", err))
	}
	s.b.Reset()
	return nil
}

func (s *store) get(k []byte) ([]byte, bool, error) {
	var v []byte
	var closer io.Closer
	var err error
	if s.b.Empty() {
		v, closer, err = s.db.Get(k) // cheaper than reading through the batch
	} else {
		v, closer, err = s.b.Get(k)
	}
	// A read that found corruption (or followed a fatal error) returns
	// the fault: one line naming the file.
	if ferr := s.fault.get(); ferr != nil {
		if err == nil {
			_ = closer.Close()
		}
		return nil, false, ferr
	}
	if errors.Is(err, cpebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	s.vbuf = append(s.vbuf[:0], v...)
	if err := closer.Close(); err != nil {
		return nil, false, err
	}
	return s.vbuf, true, nil
}

func (s *store) Get(c *statebackend.Cell) ([]byte, bool, error) {
	s.kbuf = s.cellPrefix(s.kbuf[:0], c)
	return s.get(s.kbuf)
}

func (s *store) Set(c *statebackend.Cell, v []byte) error {
	s.kbuf = s.cellPrefix(s.kbuf[:0], c)
	if err := s.b.Set(s.kbuf, v, nil); err != nil {
		return err
	}
	return s.maybeCommit()
}

func (s *store) Append(c *statebackend.Cell, v []byte) error {
	s.kbuf = s.cellPrefix(s.kbuf[:0], c)
	if err := s.b.Merge(s.kbuf, v, nil); err != nil {
		return err
	}
	return s.maybeCommit()
}

func (s *store) Delete(c *statebackend.Cell) error {
	s.kbuf = s.cellPrefix(s.kbuf[:0], c)
	if err := s.b.Delete(s.kbuf, nil); err != nil {
		return err
	}
	return s.maybeCommit()
}

func (s *store) GetEntry(c *statebackend.Cell, uk []byte) ([]byte, bool, error) {
	s.kbuf = append(s.cellPrefix(s.kbuf[:0], c), uk...)
	return s.get(s.kbuf)
}

func (s *store) SetEntry(c *statebackend.Cell, uk, v []byte) error {
	s.kbuf = append(s.cellPrefix(s.kbuf[:0], c), uk...)
	if err := s.b.Set(s.kbuf, v, nil); err != nil {
		return err
	}
	return s.maybeCommit()
}

func (s *store) DeleteEntry(c *statebackend.Cell, uk []byte) error {
	s.kbuf = append(s.cellPrefix(s.kbuf[:0], c), uk...)
	if err := s.b.Delete(s.kbuf, nil); err != nil {
		return err
	}
	return s.maybeCommit()
}

func (s *store) RangeEntries(c *statebackend.Cell, fn func(uk, v []byte) bool) error {
	lower := s.cellPrefix(nil, c) // own bounds: fn may use the store's buffers
	it, err := s.b.NewIter(&cpebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return s.fault.check(err)
	}
	s.iters++
	defer func() { s.iters-- }()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return s.fault.check(err)
		}
		if !fn(it.Key()[len(lower):], v) {
			break
		}
	}
	return s.fault.check(it.Close())
}

func (s *store) DeleteEntries(c *statebackend.Cell) error {
	s.kbuf = s.cellPrefix(s.kbuf[:0], c)
	if err := s.b.DeleteRange(s.kbuf, prefixEnd(s.kbuf), nil); err != nil {
		return err
	}
	return s.maybeCommit()
}

// Scan reads a committed view (the batch is committed first) so that fn's
// writes, which go to the batch, never disturb the iteration.
func (s *store) Scan(state uint16, kg int, fn func(key, ns, uk, v []byte) error) error {
	if err := s.commit(); err != nil {
		return err
	}
	lower := binary.BigEndian.AppendUint16(nil, uint16(kg))
	lower = binary.BigEndian.AppendUint16(lower, state)
	it, err := s.db.NewIter(&cpebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return s.fault.check(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		key, ns, uk, err := statebackend.SplitCellKey(it.Key()[4:])
		if err == nil {
			var v []byte
			if v, err = it.ValueAndErr(); err == nil {
				err = fn(key, ns, uk, v)
			}
		}
		if err != nil {
			_ = it.Close()
			return s.fault.check(err)
		}
	}
	return s.fault.check(it.Close())
}

// reverseKey builds the timer index key of an encoded timer.
func (s *store) reverseKey(dst, t []byte) ([]byte, error) {
	tm, err := statebackend.DecodeTimer(t)
	if err != nil {
		return nil, err
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(tm.KeyGroup))
	dst = binary.BigEndian.AppendUint16(dst, timerIndex)
	dst = statebackend.AppendCellKey(dst, tm.Key, tm.Namespace)
	return append(dst, t[:9]...), nil // domain | timestamp
}

func (s *store) timerWrite(t []byte, del bool) error {
	if len(t) == 0 || t[0] > byte(api.ProcessingTime) {
		return fmt.Errorf("timer %x: %w", t, statebackend.ErrCorrupt)
	}
	var err error
	if s.rbuf, err = s.reverseKey(s.rbuf[:0], t); err != nil {
		return err
	}
	s.kbuf = append(append(s.kbuf[:0], timerPrefix), t...)
	h := &s.heads[t[0]]
	if del {
		err = errors.Join(s.b.Delete(s.kbuf, nil), s.b.Delete(s.rbuf, nil))
		if h.loaded {
			if i, found := slices.BinarySearchFunc(h.keys, t, bytes.Compare); found {
				h.keys = slices.Delete(h.keys, i, i+1)
			}
		}
	} else {
		err = errors.Join(s.b.Set(s.kbuf, nil, nil), s.b.Set(s.rbuf, nil, nil))
		if h.loaded && (h.exhausted || bytes.Compare(t, h.bound) < 0) {
			if i, found := slices.BinarySearchFunc(h.keys, t, bytes.Compare); !found {
				h.keys = slices.Insert(h.keys, i, slices.Clone(t))
			}
		}
	}
	if err != nil {
		return err
	}
	return s.maybeCommit()
}

func (s *store) AddTimer(t []byte) error    { return s.timerWrite(t, false) }
func (s *store) DeleteTimer(t []byte) error { return s.timerWrite(t, true) }

func (s *store) FirstTimer(d api.TimeDomain) ([]byte, bool, error) {
	if int(d) >= len(s.heads) {
		return nil, false, fmt.Errorf("unknown time domain %v", d)
	}
	h := &s.heads[d]
	if !h.loaded || (len(h.keys) == 0 && !h.exhausted) {
		if err := s.refill(d, h); err != nil {
			return nil, false, fmt.Errorf("read %v timers: %w", d, err)
		}
	}
	if len(h.keys) == 0 {
		return nil, false, nil
	}
	return h.keys[0], true, nil
}

func (s *store) refill(d api.TimeDomain, h *timerHead) error {
	lower := []byte{timerPrefix, byte(d)}
	if h.loaded && h.bound != nil {
		lower = append([]byte{timerPrefix}, h.bound...)
	}
	it, err := s.b.NewIter(&cpebble.IterOptions{LowerBound: lower, UpperBound: []byte{timerPrefix, byte(d) + 1}})
	if err != nil {
		return s.fault.check(err)
	}
	h.keys = h.keys[:0]
	for ok := it.First(); ok && len(h.keys) < headSize; ok = it.Next() {
		h.keys = append(h.keys, slices.Clone(it.Key()[1:]))
	}
	h.loaded = true
	h.exhausted = len(h.keys) < headSize
	if !h.exhausted {
		h.bound = append(slices.Clone(h.keys[len(h.keys)-1]), 0)
	}
	return s.fault.check(it.Close())
}

func (s *store) ScanTimers(start, end int, fn func(t []byte) error) error {
	if err := s.commit(); err != nil {
		return err
	}
	var t []byte
	for kg := start; kg <= end; kg++ {
		lower := binary.BigEndian.AppendUint16(nil, uint16(kg))
		lower = binary.BigEndian.AppendUint16(lower, timerIndex)
		it, err := s.db.NewIter(&cpebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
		if err != nil {
			return s.fault.check(err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			key, ns, rest, err := statebackend.SplitCellKey(it.Key()[4:])
			if err == nil && len(rest) != 9 {
				err = fmt.Errorf("timer index key %x: %w", it.Key(), statebackend.ErrCorrupt)
			}
			if err == nil {
				ts := int64(binary.BigEndian.Uint64(rest[1:]) ^ (1 << 63))
				t = statebackend.EncodeTimer(t[:0], api.TimeDomain(rest[0]), ts, kg, key, ns)
				err = fn(t)
			}
			if err != nil {
				_ = it.Close()
				return s.fault.check(err)
			}
		}
		if err := s.fault.check(it.Close()); err != nil {
			return err
		}
	}
	return nil
}

func metaKey(id uint16) []byte {
	return binary.BigEndian.AppendUint16([]byte{metaPrefix, 'S'}, id)
}

func (s *store) SaveState(id uint16, spec []byte) error {
	if err := s.b.Set(metaKey(id), spec, nil); err != nil {
		return err
	}
	return s.commit()
}

func (s *store) SavedStates() (map[uint16][]byte, error) {
	lower := []byte{metaPrefix, 'S'}
	it, err := s.b.NewIter(&cpebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return nil, s.fault.check(err)
	}
	out := map[uint16][]byte{}
	for ok := it.First(); ok; ok = it.Next() {
		if len(it.Key()) != 4 {
			continue
		}
		out[binary.BigEndian.Uint16(it.Key()[2:])] = slices.Clone(it.Value())
	}
	return out, s.fault.check(it.Close())
}

func (s *store) Flush() error { return s.commit() }

// Close commits buffered writes and closes the DB. After a fatal Pebble
// error nothing is written: the DB is closed and the error returned.
func (s *store) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.markClosed()
	defer s.fsCloser.Close()
	if ferr := s.fault.get(); ferr != nil {
		_ = s.b.Close()
		_ = s.db.Close()
		return fmt.Errorf("close pebble state backend: %w", ferr)
	}
	err := s.commit()
	if err == nil && s.noWAL {
		// Without a WAL the memtables would be lost: write them to SSTs.
		err = s.db.Flush()
	}
	err = errors.Join(err, s.b.Close(), s.db.Close())
	if err != nil {
		return fmt.Errorf("close pebble state backend: %w", err)
	}
	return nil
}
