package snapshot

import (
	"context"
	"fmt"
	"io"

	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// WriteKeyed writes the state and timers of the key groups r of b to w in
// the canonical keyed format and returns the offset of each key group's
// section (r.Start first, for KeyedStateHandle.key_group_offsets) and the
// number of bytes written.
//
// It reads b through Iterate, one key group at a time, so its memory is
// bounded by the largest key group; it must run on the goroutine that owns
// b. r must lie within b.KeyGroups(). Checkpoints of heap state use
// Keyed.Sync instead, which writes the same bytes from a copy-on-write
// view off the task goroutine.
func WriteKeyed(ctx context.Context, w io.Writer, b statebackend.Backend, r keygroup.Range) (offsets []int64, size int64, err error) {
	own := b.KeyGroups()
	if r.Len() == 0 || r.Start < own.Start || r.End > own.End {
		return nil, 0, fmt.Errorf("write keyed snapshot of key groups %v: the backend holds %v: %w", r, own, ErrMismatch)
	}
	hdr, idx, err := headerFor(b.MaxParallelism(), r, b.States())
	if err != nil {
		return nil, 0, err
	}
	return writeSections(ctx, w, hdr, idx, b.Iterate)
}

// writeSections writes hdr and one section per key group of hdr.KeyGroups,
// each captured with iterate (Backend.Iterate or View.Iterate) just before
// it is written, so memory is bounded by the largest key group.
func writeSections(ctx context.Context, w io.Writer, hdr *KeyedHeader, idx map[string]uint64, iterate func(keygroup.Range, func(statebackend.Entry) error) error) (offsets []int64, size int64, err error) {
	r := hdr.KeyGroups
	sw := &sectionWriter{w: w}
	if err := sw.write(encodeHeader(hdr)); err != nil {
		return nil, sw.n, fmt.Errorf("write keyed snapshot header: %w", err)
	}
	offsets = make([]int64, 0, r.Len())
	secs := make([]section, 1)
	for kg := r.Start; kg <= r.End; kg++ {
		if err := ctx.Err(); err != nil {
			return nil, sw.n, fmt.Errorf("write keyed snapshot: %w", err)
		}
		one := keygroup.Range{Start: kg, End: kg}
		secs[0].reset()
		if err := iterate(one, capture(idx, one, secs)); err != nil {
			return nil, sw.n, fmt.Errorf("write keyed snapshot, key group %d: %w", kg, err)
		}
		offsets = append(offsets, sw.n)
		if err := sw.writeSection(kg, &secs[0]); err != nil {
			return nil, sw.n, fmt.Errorf("write keyed snapshot, key group %d: %w", kg, err)
		}
	}
	return offsets, sw.n, nil
}

// writeCaptured writes a header and sections captured earlier (secs[i] is
// key group r.Start+i).
func writeCaptured(ctx context.Context, w io.Writer, hdr *KeyedHeader, secs []section) (offsets []int64, size int64, err error) {
	sw := &sectionWriter{w: w}
	if err := sw.write(encodeHeader(hdr)); err != nil {
		return nil, sw.n, fmt.Errorf("write keyed snapshot header: %w", err)
	}
	offsets = make([]int64, 0, len(secs))
	for i := range secs {
		if err := ctx.Err(); err != nil {
			return nil, sw.n, fmt.Errorf("write keyed snapshot: %w", err)
		}
		offsets = append(offsets, sw.n)
		if err := sw.writeSection(hdr.KeyGroups.Start+i, &secs[i]); err != nil {
			return nil, sw.n, fmt.Errorf("write keyed snapshot, key group %d: %w", hdr.KeyGroups.Start+i, err)
		}
	}
	return offsets, sw.n, nil
}

// ReadKeyed reads a whole canonical keyed-state file sequentially, checking
// every checksum, and calls fn for each entry (slices valid during the call
// only). name is used in errors. Use it to inspect a snapshot offline.
func ReadKeyed(r io.Reader, name string, fn func(statebackend.Entry) error) (*KeyedHeader, error) {
	hdr, _, err := readHeader(r)
	if err != nil {
		return nil, fmt.Errorf("snapshot file %s: %w", name, err)
	}
	sr := &sectionReader{r: r, name: name, hdr: hdr}
	for kg := hdr.KeyGroups.Start; kg <= hdr.KeyGroups.End; kg++ {
		body, err := sr.next(kg)
		if err != nil {
			return hdr, err
		}
		if err := sr.decodeSection(kg, body, fn); err != nil {
			return hdr, err
		}
	}
	var one [1]byte
	if n, _ := io.ReadFull(r, one[:]); n != 0 {
		return hdr, fmt.Errorf("snapshot file %s: data after the last key group %d: %w", name, hdr.KeyGroups.End, ErrCorrupt)
	}
	return hdr, nil
}

// OpenFunc opens a snapshot file by its FileHandle.path. When the returned
// reader is also an io.Seeker, RestoreKeyed seeks to the key groups it
// needs; otherwise it reads and skips the sections before them.
type OpenFunc func(ctx context.Context, path string) (io.ReadCloser, error)

// OpenFrom adapts a Source (for example *storage.Storage) to an OpenFunc.
func OpenFrom(src Source) OpenFunc { return src.Open }

// RestoreKeyed restores into b exactly the key groups of r (which must lie
// within b.KeyGroups()) from canonical keyed-state handles: any number of
// handles, from one or several old subtasks, each contributing the
// sections of its key groups that overlap r. This is the rescaling path:
// every entry lands in the subtask that owns its key group. Handles that do
// not overlap r are not opened. The states of every overlapping handle are
// registered with RestoreStates before their entries are ingested.
func RestoreKeyed(ctx context.Context, b statebackend.Backend, handles []*checkpointv1.KeyedStateHandle, open OpenFunc, r keygroup.Range) error {
	own := b.KeyGroups()
	if r.Len() == 0 || r.Start < own.Start || r.End > own.End {
		return fmt.Errorf("restore key groups %v into a backend holding %v: %w", r, own, ErrMismatch)
	}
	for _, h := range handles {
		if err := restoreHandle(ctx, b, h, open, r); err != nil {
			return err
		}
	}
	return b.Flush()
}

func handleRange(h *checkpointv1.KeyedStateHandle) keygroup.Range {
	return keygroup.Range{Start: int(h.GetKeyGroupStart()), End: int(h.GetKeyGroupEnd())}
}

func overlap(a, b keygroup.Range) keygroup.Range {
	return keygroup.Range{Start: max(a.Start, b.Start), End: min(a.End, b.End)}
}

func restoreHandle(ctx context.Context, b statebackend.Backend, h *checkpointv1.KeyedStateHandle, open OpenFunc, r keygroup.Range) error {
	hr := handleRange(h)
	ov := overlap(hr, r)
	if ov.Len() == 0 {
		return nil
	}
	switch h.GetFormat() {
	case FormatCanonical, FormatHeap:
	default:
		return fmt.Errorf("restore keyed state handle %v in format %q: RestoreKeyed reads canonical handles only (use Restore for native ones): %w", hr, h.GetFormat(), ErrMismatch)
	}
	if len(h.GetFiles()) != 1 {
		return fmt.Errorf("canonical keyed state handle %v has %d files, want 1: %w", hr, len(h.GetFiles()), ErrCorrupt)
	}
	name := h.GetFiles()[0].GetPath()
	offs := h.GetKeyGroupOffsets()
	if len(offs) != 0 && len(offs) != hr.Len() {
		return fmt.Errorf("snapshot file %s: %d key-group offsets for %d key groups: %w", name, len(offs), hr.Len(), ErrCorrupt)
	}
	rc, err := open(ctx, name)
	if err != nil {
		return fmt.Errorf("restore keyed state from %s: %w", name, err)
	}
	defer rc.Close()
	hdr, pos, err := readHeader(rc)
	if err != nil {
		return fmt.Errorf("snapshot file %s: %w", name, err)
	}
	if hdr.MaxParallelism != b.MaxParallelism() {
		return fmt.Errorf("snapshot file %s has max parallelism %d, the job %d: max parallelism cannot change across a restore: %w", name, hdr.MaxParallelism, b.MaxParallelism(), ErrMismatch)
	}
	if hdr.KeyGroups != hr {
		return fmt.Errorf("snapshot file %s holds key groups %v, its handle says %v: %w", name, hdr.KeyGroups, hr, ErrMismatch)
	}
	if err := b.RestoreStates(hdr.States); err != nil {
		return fmt.Errorf("snapshot file %s: %w", name, err)
	}
	sr := &sectionReader{r: rc, name: name, hdr: hdr}
	seeker, canSeek := rc.(io.Seeker)
	next := hr.Start // key group at the current position
	for kg := ov.Start; kg <= ov.End; kg++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("restore keyed state from %s: %w", name, err)
		}
		if kg != next {
			if canSeek && len(offs) != 0 {
				off := offs[kg-hr.Start]
				if off < pos {
					return fmt.Errorf("snapshot file %s, key group %d: offset %d inside the header: %w", name, kg, off, ErrCorrupt)
				}
				if _, err := seeker.Seek(off, io.SeekStart); err != nil {
					return fmt.Errorf("snapshot file %s, key group %d: seek to %d: %w", name, kg, off, err)
				}
			} else {
				for ; next < kg; next++ {
					if _, err := sr.next(next); err != nil {
						return err
					}
				}
			}
		}
		body, err := sr.next(kg)
		if err != nil {
			return err
		}
		next = kg + 1
		err = sr.decodeSection(kg, body, func(e statebackend.Entry) error {
			if err := b.Ingest(e); err != nil {
				return fmt.Errorf("snapshot file %s, key group %d: %w", name, kg, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
