package snapshot

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// Source is checkpoint storage read at restore: paths are FileHandle paths.
// *storage.Storage (pkg/checkpoint/storage) implements it.
type Source interface {
	Open(ctx context.Context, rel string) (io.ReadCloser, error)
	Download(ctx context.Context, rel, localFile string) error
}

// Store is checkpoint storage written by Async. *storage.Storage implements
// it. Upload must return a handle with Path rel, Size, LocalName the base
// name of localFile and Shared set for paths under a shared directory.
type Store interface {
	Source
	Create(ctx context.Context, rel string) (io.WriteCloser, error)
	Upload(ctx context.Context, rel, localFile string) (*checkpointv1.FileHandle, error)
}

// Target says where Async writes one operator's snapshot in one subtask.
type Target struct {
	Store Store
	// Dir is the directory, relative to Store, of the files owned by this
	// snapshot alone: "<job-id>/chk-<n>" for a checkpoint, "" when Store is
	// opened at a savepoint's directory (paths stay relative, so the
	// savepoint is relocatable).
	Dir string
	// SharedDir is the job's shared directory ("<job-id>/shared") where
	// incremental Pebble snapshots put SST files later checkpoints reuse.
	// Empty: every file is uploaded under Dir (no reuse).
	SharedDir string
	// Name is a file-name prefix unique to the operator and subtask, such
	// as "<operator-uid>-<subtask>". Required.
	Name string
}

func (t *Target) validate() error {
	if t.Store == nil {
		return errors.New("snapshot target: nil Store: pass the checkpoint storage")
	}
	if t.Name == "" || strings.ContainsAny(t.Name, "/\\") {
		return fmt.Errorf("snapshot target: file name prefix %q must be non-empty and contain no '/': use \"<operator-uid>-<subtask>\"", t.Name)
	}
	return nil
}

func (t *Target) path(name string) string {
	if t.Dir == "" {
		return name
	}
	return path.Join(t.Dir, name)
}

// Mode selects what a snapshot writes.
type Mode uint8

const (
	// Checkpoint: heap backends write the canonical format; Pebble backends
	// upload a native checkpoint incrementally (SST files already in shared
	// storage are referenced, not uploaded again).
	Checkpoint Mode = iota
	// Full: the canonical format for every backend (a full checkpoint).
	Full
	// Savepoint: the canonical format, never referencing shared files, so
	// the snapshot is self-contained and relocatable.
	Savepoint
)

func (m Mode) String() string {
	switch m {
	case Checkpoint:
		return "checkpoint"
	case Full:
		return "full"
	case Savepoint:
		return "savepoint"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// KeyedOptions configure a Keyed snapshotter.
type KeyedOptions struct {
	// WorkDir is a local directory for native checkpoints (Pebble's are
	// hard links: put it on the file system of the backend's directory,
	// e.g. the subtask's data dir). Required for backends whose store is a
	// statebackend.NativeStore.
	WorkDir string
	// Native configures opening native checkpoints read-only (Full and
	// Savepoint snapshots of native backends: the block cache to share,
	// the logger) with the NativeFactory of their format; key groups and
	// max parallelism are taken from the backend.
	Native statebackend.Config
	// Restored are the handles the backend was restored from natively
	// (RestoreBackend's second result): their shared files are already in
	// storage and are not uploaded again.
	Restored []*checkpointv1.KeyedStateHandle
}

// Keyed takes snapshots of one keyed state backend. Sync, NotifyComplete
// and NotifyAborted run on the task goroutine that owns the backend; the
// Async of the pendings it returns run on any goroutine, concurrently with
// the task and with each other.
type Keyed struct {
	b statebackend.Backend
	// native is the backend's store when it checkpoints natively (Pebble),
	// nf the factory of its format, which reads the checkpoints back.
	native statebackend.NativeStore
	nf     statebackend.NativeFactory
	// cow is the backend when it takes copy-on-write views (heap).
	cow  *statebackend.Engine
	opts KeyedOptions
	id   string // random: shared file names never collide across backend instances
	// lastSizes are the (bytes, records) per key group of the last capture
	// (task goroutine only).
	lastSizes [][2]int

	mu        sync.Mutex
	confirmed map[string]*checkpointv1.FileHandle           // local SST name -> shared handle, confirmed by a completed checkpoint
	pending   map[int64]map[string]*checkpointv1.FileHandle // per checkpoint id, uploaded by its Async
}

// NewKeyed returns a snapshotter of b.
func NewKeyed(b statebackend.Backend, opts KeyedOptions) (*Keyed, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	k := &Keyed{b: b, opts: opts, id: hex.EncodeToString(rnd[:]),
		confirmed: map[string]*checkpointv1.FileHandle{}, pending: map[int64]map[string]*checkpointv1.FileHandle{}}
	if e, ok := b.(*statebackend.Engine); ok {
		if ns, native := e.Store().(statebackend.NativeStore); native {
			nf, err := statebackend.LookupNative(ns.NativeFormat())
			if err != nil {
				return nil, fmt.Errorf("keyed snapshots: %w", err)
			}
			if opts.WorkDir == "" {
				return nil, fmt.Errorf("keyed snapshots of a %s backend: empty WorkDir: pass a directory on the backend's file system (e.g. the subtask's data dir)", ns.NativeFormat())
			}
			k.native, k.nf = ns, nf
		} else if _, views := e.Store().(statebackend.ViewStore); views {
			k.cow = e
		}
	}
	for _, h := range opts.Restored {
		if k.native == nil || h.GetFormat() != k.native.NativeFormat() {
			continue
		}
		for _, f := range h.GetFiles() {
			if f.GetShared() && f.GetLocalName() != "" {
				k.confirmed[f.GetLocalName()] = f
			}
		}
	}
	return k, nil
}

// KeyedPending is the result of Sync: a consistent view of the state,
// written out by Async (or released by Discard). Exactly one of Async and
// Discard must be called.
type KeyedPending struct {
	k    *Keyed
	id   int64
	mode Mode
	r    keygroup.Range
	hdr  *KeyedHeader
	// view: a copy-on-write view (heap), encoded by Async
	view *statebackend.View
	idx  map[string]uint64
	// captured: a copy of every entry (backends without views)
	secs []section
	// native backends: a native checkpoint directory
	dir string
}

// KeyedResult is what Async uploaded.
type KeyedResult struct {
	Handle *checkpointv1.KeyedStateHandle
	// StateSize is the size of the whole snapshot, UploadedSize the bytes
	// uploaded for it (smaller for incremental snapshots).
	StateSize, UploadedSize int64
}

// Sync takes the synchronous part of snapshot id on the task goroutine.
// Native backends (Pebble: commit, flush the memtables and hard-link) write
// a native checkpoint into WorkDir (statebackend.NativeStore.Checkpoint). Heap: take a copy-on-write view (statebackend.Engine.View),
// in time independent of the number of keys; Async reads it while the task
// keeps writing. Other backends: copy every entry into an immutable buffer
// (one pass over the state). The sort and the encoding of the canonical
// file happen in Async. Any number of pendings may be outstanding.
func (k *Keyed) Sync(id int64, mode Mode) (*KeyedPending, error) {
	r := k.b.KeyGroups()
	p := &KeyedPending{k: k, id: id, mode: mode, r: r}
	if k.native != nil {
		if err := os.MkdirAll(k.opts.WorkDir, 0o755); err != nil {
			return nil, fmt.Errorf("snapshot %d: %w", id, err)
		}
		var rnd [4]byte
		_, _ = rand.Read(rnd[:])
		p.dir = filepath.Join(k.opts.WorkDir, fmt.Sprintf("snapshot-%d-%s", id, hex.EncodeToString(rnd[:])))
		if err := k.native.Checkpoint(p.dir); err != nil {
			_ = os.RemoveAll(p.dir)
			return nil, fmt.Errorf("snapshot %d: %w", id, err)
		}
		return p, nil
	}
	hdr, idx, err := headerFor(k.b.MaxParallelism(), r, k.b.States())
	if err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", id, err)
	}
	p.hdr = hdr
	if k.cow != nil {
		v, err := k.cow.View()
		if err != nil {
			return nil, fmt.Errorf("snapshot %d: %w", id, err)
		}
		p.view, p.idx = v, idx
		return p, nil
	}
	p.secs = make([]section, r.Len())
	if len(k.lastSizes) == len(p.secs) {
		// Size the buffers like the previous snapshot's (plus slack): no
		// regrowth copies during the pause when the state is steady.
		for i, sz := range k.lastSizes {
			if sz[0] > 0 {
				p.secs[i].data = make([]byte, 0, sz[0]+sz[0]/8)
				p.secs[i].starts = make([]int, 0, sz[1]+sz[1]/8)
			}
		}
	}
	if err := k.b.Iterate(r, capture(idx, r, p.secs)); err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", id, err)
	}
	k.lastSizes = k.lastSizes[:0]
	for i := range p.secs {
		k.lastSizes = append(k.lastSizes, [2]int{len(p.secs[i].data), len(p.secs[i].starts)})
	}
	return p, nil
}

// Discard releases a pending snapshot that will not be written (a heap
// view stops holding the state as of Sync). It is idempotent and may run
// on any goroutine, but not concurrently with Async of the same pending.
func (p *KeyedPending) Discard() error {
	p.secs = nil
	if p.view != nil {
		p.view.Release()
		p.view = nil
	}
	if p.dir != "" {
		return os.RemoveAll(p.dir)
	}
	return nil
}

// Async writes the pending snapshot to t and returns its handle. It runs
// off the task goroutine; the local checkpoint directory (native
// backends) is removed and the heap view released when it returns.
func (p *KeyedPending) Async(ctx context.Context, t Target) (*KeyedResult, error) {
	defer func() { _ = p.Discard() }()
	if err := t.validate(); err != nil {
		return nil, err
	}
	if p.dir != "" && p.mode == Checkpoint {
		return p.uploadNative(ctx, t)
	}
	if p.dir != "" {
		ro := p.k.opts.Native
		ro.Options = statebackend.Options{KeyGroups: p.r, MaxParallelism: p.k.b.MaxParallelism()}
		e, err := p.k.nf.OpenReadOnly(p.dir, ro)
		if err != nil {
			return nil, fmt.Errorf("snapshot %d: %w", p.id, err)
		}
		defer e.Close()
		return writeCanonical(ctx, t, p.id, p.r, func(w io.Writer) ([]int64, int64, error) {
			return WriteKeyed(ctx, w, e, p.r)
		})
	}
	if p.view != nil {
		return writeCanonical(ctx, t, p.id, p.r, func(w io.Writer) ([]int64, int64, error) {
			return writeSections(ctx, w, p.hdr, p.idx, p.view.Iterate)
		})
	}
	if p.secs == nil {
		return nil, fmt.Errorf("snapshot %d: Async of a discarded or already written snapshot: take a new one with Sync", p.id)
	}
	return writeCanonical(ctx, t, p.id, p.r, func(w io.Writer) ([]int64, int64, error) {
		return writeCaptured(ctx, w, p.hdr, p.secs)
	})
}

func writeCanonical(ctx context.Context, t Target, id int64, r keygroup.Range, write func(io.Writer) ([]int64, int64, error)) (*KeyedResult, error) {
	rel := t.path(t.Name + "-keyed.kst")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := t.Store.Create(wctx, rel)
	if err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", id, err)
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	offs, n, err := write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		cancel() // abandon the partial object
		_ = w.Close()
		return nil, fmt.Errorf("snapshot %d: write %s: %w", id, rel, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", id, err)
	}
	return &KeyedResult{
		Handle: &checkpointv1.KeyedStateHandle{
			KeyGroupStart: int32(r.Start), KeyGroupEnd: int32(r.End), Format: FormatCanonical,
			Files:           []*checkpointv1.FileHandle{{Path: rel, Size: n}},
			KeyGroupOffsets: offs,
		},
		StateSize: n, UploadedSize: n,
	}, nil
}

// immutable reports whether a file of a native checkpoint never changes
// once written (Pebble's SST and blob files), so it can be shared across
// checkpoints.
func immutable(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")
}

func (p *KeyedPending) uploadNative(ctx context.Context, t Target) (*KeyedResult, error) {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", p.id, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		} else {
			return nil, fmt.Errorf("snapshot %d: unexpected %s in %s checkpoint %s", p.id, e.Name(), p.k.native.NativeFormat(), p.dir)
		}
	}
	sort.Strings(names)
	k := p.k
	res := &KeyedResult{Handle: &checkpointv1.KeyedStateHandle{
		KeyGroupStart: int32(p.r.Start), KeyGroupEnd: int32(p.r.End), Format: k.native.NativeFormat()}}
	uploaded := map[string]*checkpointv1.FileHandle{}
	present := map[string]bool{}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("snapshot %d: %w", p.id, err)
		}
		present[name] = true
		var fh *checkpointv1.FileHandle
		shared := t.SharedDir != "" && immutable(name)
		if shared {
			k.mu.Lock()
			if c := k.confirmed[name]; c != nil {
				fh = &checkpointv1.FileHandle{Path: c.GetPath(), Size: c.GetSize(), Shared: true, LocalName: name}
			}
			k.mu.Unlock()
		}
		if fh == nil {
			rel := t.path(t.Name + "-" + name)
			if shared {
				// Unique per backend instance and checkpoint: a file
				// re-uploaded after an abort never takes the path the
				// aborted checkpoint's cleanup deletes.
				rel = path.Join(t.SharedDir, fmt.Sprintf("%s-%s-%d-%s", t.Name, k.id, p.id, name))
			}
			fh, err = t.Store.Upload(ctx, rel, filepath.Join(p.dir, name))
			if err != nil {
				return nil, fmt.Errorf("snapshot %d: %w", p.id, err)
			}
			fh.LocalName, fh.Shared = name, shared
			res.UploadedSize += fh.GetSize()
			if shared {
				uploaded[name] = fh
			}
		}
		res.StateSize += fh.GetSize()
		res.Handle.Files = append(res.Handle.Files, fh)
	}
	k.mu.Lock()
	k.pending[p.id] = uploaded
	for name := range k.confirmed {
		if !present[name] {
			delete(k.confirmed, name) // compacted away: SST names are never reused
		}
	}
	k.mu.Unlock()
	return res, nil
}

// NotifyComplete tells the snapshotter that checkpoint id completed: the
// shared files it uploaded may be referenced by later checkpoints.
// Checkpoints before id that never completed are forgotten.
func (k *Keyed) NotifyComplete(id int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for pid, files := range k.pending {
		if pid == id {
			for name, fh := range files {
				k.confirmed[name] = fh
			}
		}
		if pid <= id {
			delete(k.pending, pid)
		}
	}
}

// NotifyAborted tells the snapshotter that checkpoint id was aborted: its
// uploaded files may be deleted and are not referenced again.
func (k *Keyed) NotifyAborted(id int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.pending, id)
}
