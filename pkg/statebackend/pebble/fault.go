package pebble

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	cpebble "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flowrt/flow/pkg/statebackend"
)

// Errors of the package; test with errors.Is.
var (
	// ErrCorrupt is wrapped by every error reporting a corrupt Pebble file:
	// a block whose checksum does not match, a truncated or unreadable SST,
	// a MANIFEST Pebble cannot replay, a file whose size differs from the
	// one its checkpoint recorded. It is returned by VerifyFile, by Open and
	// OpenReadOnly, and by every operation of a backend after Pebble found
	// corruption while it ran. The message names the file.
	// errors.Is(err, statebackend.ErrCorrupt) holds as well.
	ErrCorrupt error = corruptError{}
	// ErrFatal is wrapped when Pebble reported an error it treats as fatal
	// (its Logger's Fatalf: a failed MANIFEST write, a broken commit
	// pipeline, a violated invariant). The process keeps running: the
	// backend stops using the DB and every later operation returns the
	// error, so only the task owning the backend fails.
	ErrFatal = errors.New("pebble state backend stopped after a fatal Pebble error")
)

type corruptError struct{}

func (corruptError) Error() string        { return "corrupt pebble state file" }
func (corruptError) Is(target error) bool { return target == statebackend.ErrCorrupt }

// fault holds the first fatal error Pebble reported for one DB, through
// its Logger's Fatalf or its DataCorruption event, from any goroutine
// (Pebble runs flushes, compactions and table-stats loading in its own).
// Pebble's default for both is to exit the process; here the error is
// logged and kept, and the store returns it from its next operation.
type fault struct {
	dir string
	log *slog.Logger
	err atomic.Pointer[error]
}

// set keeps err if it is the first (logged at error level; later ones,
// such as a compaction retrying over a corrupt file, at debug level).
func (f *fault) set(err error) {
	if f.err.CompareAndSwap(nil, &err) {
		f.log.Error("pebble reported a fatal error: the backend stops using the DB and returns it", "err", err)
		return
	}
	f.log.Debug("pebble reported another fatal error", "err", err)
}

// get returns the kept error, or nil.
func (f *fault) get() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// check returns the kept error if there is one, else err: an operation
// that failed because Pebble found corruption reports it as one line
// naming the file.
func (f *fault) check(err error) error {
	if ferr := f.get(); ferr != nil {
		return ferr
	}
	return err
}

// dataCorruption is the DB's EventListener.DataCorruption (called
// synchronously where Pebble reads the corrupt block, on a read path or in
// a compaction).
func (f *fault) dataCorruption(info cpebble.DataCorruptionInfo) {
	f.set(fmt.Errorf("state file %s is corrupt: %s: %w", info.Path, oneLine(info.Details), ErrCorrupt))
}

// pebbleLogger is the Logger given to Pebble: informational messages at
// debug level, errors at error level; Fatalf never exits (it records the
// error in the backend's fault).
type pebbleLogger struct {
	l *slog.Logger
	f *fault
}

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}

// Fatalf records a fatal Pebble error; it does not exit or panic (Pebble
// calls it from its background goroutines as well as from the task's).
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := oneLine(errors.New(fmt.Sprintf(format, args...)))
	for _, a := range args {
		if err, ok := a.(error); ok && cpebble.IsCorruptionError(err) {
			p.f.set(fmt.Errorf("pebble state in %s is corrupt: %s: %w", p.f.dir, msg, ErrCorrupt))
			return
		}
	}
	p.f.set(fmt.Errorf("pebble state in %s: %s: %w", p.f.dir, msg, ErrFatal))
}

// newFault returns the fault of the DB in dir and the Pebble options that
// report into it (Logger and EventListener.DataCorruption).
func newFault(dir string, l *slog.Logger, po *cpebble.Options) *fault {
	f := &fault{dir: dir, log: l}
	po.Logger = pebbleLogger{l: l, f: f}
	po.EventListener = &cpebble.EventListener{DataCorruption: f.dataCorruption}
	return f
}

// openError describes a failed cpebble.Open of dir.
func openError(what, dir string, err error) error {
	if cpebble.IsCorruptionError(err) {
		return fmt.Errorf("pebble state backend: %s %s: the DB is corrupt: %s: %w", what, dir, oneLine(err), ErrCorrupt)
	}
	return fmt.Errorf("pebble state backend: %s %s: %w", what, dir, err)
}

// oneLine renders err on one line (Pebble's errors may span several).
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// VerifyFile checks one file of a native Pebble checkpoint (as written by
// Checkpoint, typically just downloaded from checkpoint storage) at the
// local path: when size > 0 (the size its checkpoint recorded) the file
// must have it, and an SST file (*.sst) must open and every one of its
// blocks must match its checksum (Pebble's own, crc32c or xxhash, written
// with the block). Other files (MANIFEST, OPTIONS) are checked when the DB
// opens. name is what errors call the file (its path in checkpoint
// storage; path when empty). A corrupt file is an error wrapping
// ErrCorrupt; a file that cannot be read is another error.
//
// It reads the whole SST once; restoring a native checkpoint calls it for
// every file before opening the DB, so a corrupt file fails the restore
// at once, naming the file, instead of failing a read later.
func VerifyFile(path, name string, size int64) error {
	if name == "" {
		name = path
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("verify state file %s: %w", name, err)
	}
	if size > 0 && fi.Size() != size {
		return fmt.Errorf("state file %s is corrupt: %d bytes, its checkpoint recorded %d: restore from a savepoint or from an earlier checkpoint that does not use this file: %w", name, fi.Size(), size, ErrCorrupt)
	}
	if filepath.Ext(path) != ".sst" {
		return nil
	}
	f, err := vfs.Default.Open(path)
	if err != nil {
		return fmt.Errorf("verify state file %s: %w", name, err)
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("verify state file %s: %w", name, err)
	}
	ro := readerOptions()
	// Pebble's errors name the file by its number ("pebble: file 000012"):
	// the one in the local name, not 0.
	if n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".sst"), 10, 64); err == nil {
		setUint(&ro.CacheOpts.FileNum, n)
	}
	r, err := sstable.NewReader(context.Background(), readable, ro)
	if err != nil {
		_ = readable.Close()
		return verifyError(name, err)
	}
	err = r.ValidateBlockChecksums()
	if cerr := r.Close(); err == nil && cerr != nil {
		return fmt.Errorf("verify state file %s: %w", name, cerr)
	}
	if err != nil {
		return verifyError(name, err)
	}
	return nil
}

func verifyError(name string, err error) error {
	if cpebble.IsCorruptionError(err) {
		return fmt.Errorf("state file %s is corrupt: %s: restore from a savepoint or from an earlier checkpoint that does not use this file: %w", name, oneLine(err), ErrCorrupt)
	}
	return fmt.Errorf("verify state file %s: %w", name, err)
}

// setUint sets *p (the type of a Pebble file number is internal to
// Pebble, so it is inferred here rather than named).
func setUint[T ~uint64](p *T, n uint64) { *p = T(n) }

// readerOptions are the SST reader options of the backend's DBs (its
// comparer, key schemas and merger).
func readerOptions() sstable.ReaderOptions {
	po := &cpebble.Options{Merger: listMerger}
	po.EnsureDefaults()
	return po.MakeReaderOptions()
}
