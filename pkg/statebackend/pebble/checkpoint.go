package pebble

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	cpebble "github.com/cockroachdb/pebble/v2"

	"github.com/flowrt/flow/pkg/statebackend"
)

// ErrNotPebble is returned by Checkpoint for an engine that is not a Pebble
// backend.
var ErrNotPebble = errors.New("not a pebble state backend")

// IsPebble reports whether e is a Pebble backend (returned by Open or
// OpenReadOnly).
func IsPebble(e *statebackend.Engine) bool {
	_, ok := e.Store().(*store)
	return ok
}

// Checkpoint writes a native, consistent copy of e's DB into dir, which must
// not exist: it commits e's buffered writes, flushes the memtables to SST
// files (the WAL is off by default, so unflushed data would be missing) and
// calls Pebble's DB.Checkpoint, which hard-links the immutable SST files and
// copies the small MANIFEST and OPTIONS files. Every write made before the
// call is in the checkpoint, none made after.
//
// It runs on the task goroutine (it is the synchronous part of a snapshot);
// its cost is the memtable flush plus one hard link per SST file. The
// store of a Pebble backend implements statebackend.NativeStore with it.
func Checkpoint(e *statebackend.Engine, dir string) error {
	s, ok := e.Store().(*store)
	if !ok {
		return fmt.Errorf("pebble checkpoint to %s: %w", dir, ErrNotPebble)
	}
	return s.Checkpoint(dir)
}

var _ statebackend.NativeStore = (*store)(nil)

// NativeFormat implements statebackend.NativeStore: Name.
func (s *store) NativeFormat() string { return Name }

// Checkpoint implements statebackend.NativeStore (see the package's
// Checkpoint).
func (s *store) Checkpoint(dir string) error {
	if s.closed {
		return fmt.Errorf("pebble checkpoint to %s: backend is closed", dir)
	}
	if err := s.commit(); err != nil {
		return fmt.Errorf("pebble checkpoint to %s: %w", dir, err)
	}
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("pebble checkpoint to %s: flush memtables: %w", dir, err)
	}
	if err := s.db.Checkpoint(dir, cpebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("pebble checkpoint to %s: %w", dir, err)
	}
	return nil
}

// OpenReadOnly opens a DB directory read-only (typically a checkpoint
// written by Checkpoint, or one downloaded from checkpoint storage) as an
// Engine whose Iterate streams its contents in the canonical form. opts
// must carry the key-group range and max parallelism the DB was written
// with. Nothing is written to dir; Close releases it. Writes fail.
func OpenReadOnly(dir string, opts Options) (*statebackend.Engine, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("pebble state backend: open %s read-only: %w", dir, err)
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 8 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	po := &cpebble.Options{
		ReadOnly:   true,
		DisableWAL: true,
		Merger:     listMerger,
	}
	f := newFault(dir, opts.Logger.With("component", "pebble-state", "dir", dir, "read_only", true), po)
	cache := opts.Cache
	if cache == nil {
		cache = cpebble.NewCache(opts.CacheSize)
		defer cache.Unref()
	}
	po.Cache = cache
	db, fsCloser, err := openDB(dir, po)
	if err != nil {
		return nil, openError("open read-only", dir, f.check(err))
	}
	// noWAL false: Close must not try to flush memtables of a read-only DB.
	s := &store{db: db, fsCloser: fsCloser, b: db.NewIndexedBatch(), limit: 1 << 20, fault: f}
	return newEngine(s, opts.Options)
}
