package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// Restore restores the key groups r of b (r within b.KeyGroups()) from
// keyed-state handles of any format and any old parallelism:
//   - canonical handles are read with RestoreKeyed (seeking to the
//     sections of r);
//   - native handles (format "pebble") that overlap r are downloaded into
//     a temporary directory under workDir, verified and opened read-only
//     by the statebackend.NativeFactory of their format, and the entries
//     of their key groups in r are ingested (the rescaling and
//     backend-switching path for native snapshots). Use RestoreBackend to
//     reopen a native snapshot in place when nothing changed.
func Restore(ctx context.Context, b statebackend.Backend, handles []*checkpointv1.KeyedStateHandle, src Source, r keygroup.Range, workDir string) error {
	own := b.KeyGroups()
	if r.Len() == 0 || r.Start < own.Start || r.End > own.End {
		return fmt.Errorf("restore key groups %v into a backend holding %v: %w", r, own, ErrMismatch)
	}
	for _, h := range handles {
		if overlap(handleRange(h), r).Len() == 0 {
			continue
		}
		var err error
		switch h.GetFormat() {
		case FormatCanonical, FormatHeap:
			err = restoreHandle(ctx, b, h, src.Open, r)
		default:
			nf, lerr := statebackend.LookupNative(h.GetFormat())
			if lerr != nil {
				return fmt.Errorf("restore keyed state handle %v: %w: %w", handleRange(h), lerr, ErrMismatch)
			}
			err = restoreNativeByIngest(ctx, nf, b, h, src, r, workDir)
		}
		if err != nil {
			return err
		}
	}
	return b.Flush()
}

// downloadNative downloads the files of a native handle into dir under
// their local names and verifies them with the factory of their format
// (each file's recorded size and its checksums: VerifyFile; the snapshot
// as a whole, Pebble's MANIFEST: VerifyCheckpoint), so that a corrupt file
// fails the restore naming it, wrapping statebackend.ErrCorrupt
// (pebble.ErrCorrupt), before the DB opens.
func downloadNative(ctx context.Context, nf statebackend.NativeFactory, h *checkpointv1.KeyedStateHandle, src Source, dir string) error {
	format := nf.Name()
	if len(h.GetFiles()) == 0 {
		return fmt.Errorf("native %s handle %v has no files: %w", format, handleRange(h), ErrCorrupt)
	}
	names := make(map[string]string, len(h.GetFiles()))
	for _, f := range h.GetFiles() {
		name := f.GetLocalName()
		if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			return fmt.Errorf("native %s handle %v: file %s has local name %q: %w", format, handleRange(h), f.GetPath(), name, ErrCorrupt)
		}
		local := filepath.Join(dir, name)
		if err := src.Download(ctx, f.GetPath(), local); err != nil {
			return fmt.Errorf("restore %s snapshot: %w", format, err)
		}
		if err := nf.VerifyFile(local, f.GetPath(), f.GetSize()); err != nil {
			return fmt.Errorf("restore %s snapshot: %w", format, err)
		}
		names[name] = f.GetPath()
	}
	if err := nf.VerifyCheckpoint(dir, names); err != nil {
		return fmt.Errorf("restore %s snapshot: %w", format, err)
	}
	return nil
}

func restoreNativeByIngest(ctx context.Context, nf statebackend.NativeFactory, b statebackend.Backend, h *checkpointv1.KeyedStateHandle, src Source, r keygroup.Range, workDir string) error {
	format := nf.Name()
	if workDir == "" {
		return fmt.Errorf("restore native %s snapshot %v into key groups %v: empty work dir: pass a local directory for the download", format, handleRange(h), r)
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return fmt.Errorf("restore native %s snapshot: %w", format, err)
	}
	dir, err := os.MkdirTemp(workDir, "restore-")
	if err != nil {
		return fmt.Errorf("restore native %s snapshot: %w", format, err)
	}
	defer os.RemoveAll(dir)
	if err := downloadNative(ctx, nf, h, src, dir); err != nil {
		return err
	}
	hr := handleRange(h)
	e, err := nf.OpenReadOnly(dir, statebackend.Config{Options: statebackend.Options{KeyGroups: hr, MaxParallelism: b.MaxParallelism()}})
	if err != nil {
		return fmt.Errorf("restore native %s snapshot %v: %w", format, hr, err)
	}
	defer e.Close()
	if err := b.RestoreStates(e.States()); err != nil {
		return fmt.Errorf("restore native %s snapshot %v: %w", format, hr, err)
	}
	ov := overlap(hr, r)
	err = e.Iterate(ov, func(en statebackend.Entry) error {
		if !ov.Contains(en.KeyGroup) {
			return nil
		}
		return b.Ingest(en)
	})
	if err != nil {
		return fmt.Errorf("restore native %s snapshot %v into key groups %v: %w", format, hr, r, err)
	}
	return nil
}

// RestoreBackend opens a backend of kind f as cfg says, restored from
// handles, and returns it with the handles it was reopened from natively.
// When f is a statebackend.NativeFactory and handles are one handle of
// its format for exactly cfg.KeyGroups, the handle's files are downloaded
// into cfg.Dir (which must not hold files yet) and verified, and the
// backend is opened there as it was (no rewrite; the second result, those
// handles, seeds KeyedOptions.Restored so that their shared files are not
// uploaded again). Otherwise (canonical handles, rescaling, another max
// parallelism, another backend) an empty backend is opened and filled by
// Restore, and the second result is nil. cfg.KeyGroups and
// cfg.MaxParallelism must be set. Native handles do not record the max
// parallelism: the caller checks it against OperatorState.max_parallelism
// (canonical files carry and check it).
func RestoreBackend(ctx context.Context, f statebackend.Factory, cfg statebackend.Config, src Source, handles []*checkpointv1.KeyedStateHandle, workDir string) (statebackend.Backend, []*checkpointv1.KeyedStateHandle, error) {
	return restoreBackend(ctx, f, cfg.Dir, cfg.Options, src, handles, workDir, func() (statebackend.Backend, error) { return f.Open(cfg) })
}

// RestorePebble is RestoreBackend for a Pebble backend at dir with all of
// pebble.Options (opts.KeyGroups and opts.MaxParallelism must be set).
func RestorePebble(ctx context.Context, src Source, handles []*checkpointv1.KeyedStateHandle, dir string, opts pebble.Options, workDir string) (*statebackend.Engine, error) {
	var e *statebackend.Engine
	_, _, err := restoreBackend(ctx, pebble.Factory{}, dir, opts.Options, src, handles, workDir, func() (statebackend.Backend, error) {
		var err error
		if e, err = pebble.Open(dir, opts); err != nil {
			return nil, err
		}
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

func restoreBackend(ctx context.Context, f statebackend.Factory, dir string, o statebackend.Options, src Source, handles []*checkpointv1.KeyedStateHandle, workDir string, open func() (statebackend.Backend, error)) (statebackend.Backend, []*checkpointv1.KeyedStateHandle, error) {
	name := f.Name()
	if o.MaxParallelism == 0 || o.KeyGroups.Len() == 0 {
		return nil, nil, fmt.Errorf("restore %s backend at %s: set Options.KeyGroups and MaxParallelism (keygroup.RangeFor): %w", name, dir, ErrMismatch)
	}
	if nf, ok := f.(statebackend.NativeFactory); ok && len(handles) == 1 && handles[0].GetFormat() == name && handleRange(handles[0]) == o.KeyGroups {
		if dir == "" {
			return nil, nil, fmt.Errorf("restore %s backend: empty directory: pass the subtask's state directory", name)
		}
		if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
			return nil, nil, fmt.Errorf("restore %s backend into %s: the directory is not empty: pass a fresh directory", name, dir)
		}
		if err := downloadNative(ctx, nf, handles[0], src, dir); err != nil {
			return nil, nil, err
		}
		b, err := open()
		if err != nil {
			return nil, nil, fmt.Errorf("restore %s backend: %w", name, err)
		}
		return b, handles, nil
	}
	b, err := open()
	if err != nil {
		return nil, nil, fmt.Errorf("restore %s backend: %w", name, err)
	}
	if err := Restore(ctx, b, handles, src, o.KeyGroups, workDir); err != nil {
		_ = b.Close()
		return nil, nil, err
	}
	return b, nil, nil
}

// KeyedHandlesFor returns the keyed-state handles of the old subtasks that
// overlap r: what a new subtask owning r passes to Restore, RestoreKeyed or
// RestorePebble after rescaling (or the one handle of its own old subtask
// when the parallelism is unchanged).
func KeyedHandlesFor(old []*checkpointv1.SubtaskState, r keygroup.Range) []*checkpointv1.KeyedStateHandle {
	var out []*checkpointv1.KeyedStateHandle
	for _, st := range old {
		for _, h := range st.GetKeyed() {
			if overlap(handleRange(h), r).Len() > 0 {
				out = append(out, h)
			}
		}
	}
	return out
}
