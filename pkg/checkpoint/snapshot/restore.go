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
//   - native Pebble handles that overlap r are downloaded into a temporary
//     directory under workDir, opened read-only, and the entries of their
//     key groups in r are ingested (the rescaling and backend-switching
//     path for native snapshots). Use RestorePebble to reopen a native
//     snapshot in place when nothing changed.
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
		if h.GetFormat() == FormatPebble {
			err = restoreNativeByIngest(ctx, b, h, src, r, workDir)
		} else {
			err = restoreHandle(ctx, b, h, src.Open, r)
		}
		if err != nil {
			return err
		}
	}
	return b.Flush()
}

// downloadNative downloads the files of a native Pebble handle into dir
// under their local names and verifies them (each file's recorded size
// and the block checksums of SSTs: pebble.VerifyFile; the MANIFEST:
// pebble.VerifyCheckpoint), so that a corrupt file fails the restore
// naming it, wrapping pebble.ErrCorrupt, before the DB opens.
func downloadNative(ctx context.Context, h *checkpointv1.KeyedStateHandle, src Source, dir string) error {
	if len(h.GetFiles()) == 0 {
		return fmt.Errorf("native pebble handle %v has no files: %w", handleRange(h), ErrCorrupt)
	}
	names := make(map[string]string, len(h.GetFiles()))
	for _, f := range h.GetFiles() {
		name := f.GetLocalName()
		if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			return fmt.Errorf("native pebble handle %v: file %s has local name %q: %w", handleRange(h), f.GetPath(), name, ErrCorrupt)
		}
		local := filepath.Join(dir, name)
		if err := src.Download(ctx, f.GetPath(), local); err != nil {
			return fmt.Errorf("restore pebble snapshot: %w", err)
		}
		if err := pebble.VerifyFile(local, f.GetPath(), f.GetSize()); err != nil {
			return fmt.Errorf("restore pebble snapshot: %w", err)
		}
		names[name] = f.GetPath()
	}
	if err := pebble.VerifyCheckpoint(dir, names); err != nil {
		return fmt.Errorf("restore pebble snapshot: %w", err)
	}
	return nil
}

func restoreNativeByIngest(ctx context.Context, b statebackend.Backend, h *checkpointv1.KeyedStateHandle, src Source, r keygroup.Range, workDir string) error {
	if workDir == "" {
		return fmt.Errorf("restore native pebble snapshot %v into key groups %v: empty work dir: pass a local directory for the download", handleRange(h), r)
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return fmt.Errorf("restore native pebble snapshot: %w", err)
	}
	dir, err := os.MkdirTemp(workDir, "restore-")
	if err != nil {
		return fmt.Errorf("restore native pebble snapshot: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := downloadNative(ctx, h, src, dir); err != nil {
		return err
	}
	hr := handleRange(h)
	e, err := pebble.OpenReadOnly(dir, pebble.Options{Options: statebackend.Options{KeyGroups: hr, MaxParallelism: b.MaxParallelism()}})
	if err != nil {
		return fmt.Errorf("restore native pebble snapshot %v: %w", hr, err)
	}
	defer e.Close()
	if err := b.RestoreStates(e.States()); err != nil {
		return fmt.Errorf("restore native pebble snapshot %v: %w", hr, err)
	}
	ov := overlap(hr, r)
	err = e.Iterate(ov, func(en statebackend.Entry) error {
		if !ov.Contains(en.KeyGroup) {
			return nil
		}
		return b.Ingest(en)
	})
	if err != nil {
		return fmt.Errorf("restore native pebble snapshot %v into key groups %v: %w", hr, r, err)
	}
	return nil
}

// RestorePebble opens the Pebble backend of a subtask at dir (which must
// not hold a DB yet) restored from handles. When handles are one native
// Pebble handle of exactly opts.KeyGroups, its files are downloaded into
// dir and the DB is opened there as it was (no rewrite; the returned
// handles seed KeyedOptions.Restored so its shared files are not uploaded
// again). Otherwise (canonical handles, rescaling, another max
// parallelism) an empty backend is opened at dir and filled by Restore.
// opts.KeyGroups and opts.MaxParallelism must be set. Native handles do not
// record the max parallelism: the caller checks it against
// OperatorState.max_parallelism (canonical files carry and check it).
func RestorePebble(ctx context.Context, src Source, handles []*checkpointv1.KeyedStateHandle, dir string, opts pebble.Options, workDir string) (*statebackend.Engine, error) {
	if opts.MaxParallelism == 0 || opts.KeyGroups.Len() == 0 {
		return nil, fmt.Errorf("restore pebble backend at %s: set Options.KeyGroups and MaxParallelism (keygroup.RangeFor): %w", dir, ErrMismatch)
	}
	if len(handles) == 1 && handles[0].GetFormat() == FormatPebble && handleRange(handles[0]) == opts.KeyGroups {
		if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
			return nil, fmt.Errorf("restore pebble backend into %s: the directory is not empty: pass a fresh directory", dir)
		}
		if err := downloadNative(ctx, handles[0], src, dir); err != nil {
			return nil, err
		}
		e, err := pebble.Open(dir, opts)
		if err != nil {
			return nil, fmt.Errorf("restore pebble backend: %w", err)
		}
		return e, nil
	}
	e, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("restore pebble backend: %w", err)
	}
	if err := Restore(ctx, e, handles, src, opts.KeyGroups, workDir); err != nil {
		_ = e.Close()
		return nil, err
	}
	return e, nil
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
