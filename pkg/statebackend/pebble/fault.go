package pebble

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	cpebble "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flowrt/flow/pkg/statebackend"
)

// Errors of the package; test with errors.Is.
var (
	// ErrCorrupt is wrapped by every error reporting a corrupt Pebble file:
	// a block whose checksum does not match, a truncated or unreadable SST,
	// a MANIFEST Pebble cannot replay or that does not list every SST, an
	// OPTIONS file that does not parse, a file whose size differs from the
	// one its checkpoint recorded. It is returned by VerifyFile,
	// VerifyCheckpoint, Open and OpenReadOnly, and by every operation of a
	// backend after Pebble found corruption while it ran. The message
	// names the file.
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
	po.EventListener = &cpebble.EventListener{
		DataCorruption: f.dataCorruption,
		DiskSlow:       func(info cpebble.DiskSlowInfo) { l.Warn("slow disk", "info", info.String()) },
	}
	return f
}

// openDB opens the DB in dir with Pebble's disk-health-checking file
// system (the one Pebble installs by default), whose closer the caller
// closes after the DB: Pebble closes its own only in DB.Close, so a failed
// Open would leave its ticker goroutine running.
func openDB(dir string, po *cpebble.Options) (*cpebble.DB, io.Closer, error) {
	fs, closer := vfs.WithDiskHealthChecks(vfs.Default, 5*time.Second, nil, po.EventListener.DiskSlow)
	po.FS = fs
	db, err := cpebble.Open(dir, po)
	if err != nil {
		_ = closer.Close()
		return nil, nil, err
	}
	return db, closer, nil
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
