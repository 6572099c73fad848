package statebackend

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
)

// ErrUnknownBackend is wrapped by Lookup and LookupNative for a name no
// registered Factory has.
var ErrUnknownBackend = errors.New("unknown state backend")

// Factory opens the keyed backends of one kind, chosen by name: the
// "type" of JobGraph.state_backend. The heap and pebble subpackages
// register theirs (Register) when they are imported.
type Factory interface {
	// Name is the kind's name ("heap", "pebble").
	Name() string
	// OnDisk reports whether the backends keep their state in Config.Dir,
	// which the caller must then give (a directory of the subtask's own,
	// cleared of stale state). In-memory kinds ignore Config.Dir.
	OnDisk() bool
	// Open opens a backend as cfg says: an empty one, or for on-disk kinds
	// the one whose files are in cfg.Dir (such as a native snapshot just
	// downloaded there).
	Open(cfg Config) (Backend, error)
}

// NativeFactory is a Factory whose backends also take native snapshots:
// their Store is a NativeStore whose NativeFormat is the factory's Name,
// and the factory reads those snapshots back. Snapshots and restores ask
// for it by the format a keyed-state handle records (LookupNative), never
// by the type of a backend.
type NativeFactory interface {
	Factory
	// VerifyFile checks one file of a native snapshot at the local path,
	// typically just downloaded: when size > 0 the file must have it, and
	// its content must match the checksums it carries. name is what errors
	// call the file (its path in checkpoint storage). A corrupt file is an
	// error wrapping ErrCorrupt.
	VerifyFile(path, name string, size int64) error
	// VerifyCheckpoint checks the native snapshot in dir as a whole, once
	// every file is there and passed VerifyFile. names maps local file
	// names to what errors call them. A corrupt snapshot is an error
	// wrapping ErrCorrupt.
	VerifyCheckpoint(dir string, names map[string]string) error
	// OpenReadOnly opens the native snapshot in dir read-only: Iterate
	// streams it in the canonical form; writes fail; nothing is written to
	// dir. cfg.Options must be the key groups and max parallelism it was
	// written with; cfg.Dir is ignored.
	OpenReadOnly(dir string, cfg Config) (Backend, error)
}

// NativeStore is implemented by Stores whose state can be copied natively
// (files, hard links) instead of through the canonical entry stream.
type NativeStore interface {
	Store
	// NativeFormat is the name of the NativeFactory that reads the copies
	// (KeyedStateHandle.format).
	NativeFormat() string
	// Checkpoint writes a consistent native copy of the state into dir,
	// which must not exist: every write made before the call is in it,
	// none made after. It runs on the goroutine that owns the backend.
	Checkpoint(dir string) error
}

// Config says how a Factory opens one keyed backend. Fields a kind does
// not use are ignored by it.
type Config struct {
	// Options are the key groups, max parallelism and clock.
	Options
	// Dir is the backend's directory (on-disk kinds; required by them).
	Dir string
	// BlockCacheSize, MemtableSize and Compression tune on-disk kinds
	// (JobGraph.state_backend; zero values: the kind's defaults).
	BlockCacheSize int64
	MemtableSize   int64
	Compression    string
	// SharedCache is a block cache shared by the backends of one process
	// (a TaskManager), made by the kind that uses it: pebble takes a
	// *pebble.Cache from pebble.NewCache. Nil: each backend has its own.
	SharedCache any
	// Logger receives the backend's messages. Default: slog.Default().
	Logger *slog.Logger
}

var registry = struct {
	sync.RWMutex
	m map[string]Factory
}{m: map[string]Factory{}}

// Register makes f available by its name to Lookup. Backend packages call
// it from init. It panics when the name is empty or already registered: a
// programming error, as with database/sql.Register.
func Register(f Factory) {
	registry.Lock()
	defer registry.Unlock()
	name := f.Name()
	if name == "" {
		panic("statebackend: Register of a factory with an empty name")
	}
	if _, dup := registry.m[name]; dup {
		panic(fmt.Sprintf("statebackend: Register called twice for state backend %q", name))
	}
	registry.m[name] = f
}

// Names lists the registered state backends, sorted.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]string, 0, len(registry.m))
	for n := range registry.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func known() string {
	n := Names()
	if len(n) == 0 {
		return "none is registered: import github.com/flowrt/flow/pkg/statebackend/heap or .../pebble"
	}
	return "use " + strings.Join(n, " or ")
}

// Lookup returns the Factory registered as name. An unknown name is a
// one-line error, wrapping ErrUnknownBackend, that lists the known ones.
func Lookup(name string) (Factory, error) {
	registry.RLock()
	f := registry.m[name]
	registry.RUnlock()
	if f == nil {
		return nil, fmt.Errorf("state backend %q is unknown: %s: %w", name, known(), ErrUnknownBackend)
	}
	return f, nil
}

// LookupNative returns the NativeFactory that reads native snapshots of
// format (a KeyedStateHandle.format). A format no registered kind reads
// natively is a one-line error wrapping ErrUnknownBackend.
func LookupNative(format string) (NativeFactory, error) {
	registry.RLock()
	f := registry.m[format]
	var natives []string
	for n, g := range registry.m {
		if _, ok := g.(NativeFactory); ok {
			natives = append(natives, n)
		}
	}
	registry.RUnlock()
	if nf, ok := f.(NativeFactory); ok {
		return nf, nil
	}
	sort.Strings(natives)
	return nil, fmt.Errorf("keyed state format %q is not the native snapshot format of any registered state backend (native formats: %s): %w",
		format, strings.Join(natives, ", "), ErrUnknownBackend)
}
