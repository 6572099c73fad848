package snapshot

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// Operator-state file format (docs/formats/state-snapshot.md).
const (
	// OperatorMagic starts every operator-state file.
	OperatorMagic = "FLOWOPS1"
	// OperatorFormatVersion is the version this package writes.
	OperatorFormatVersion = 1

	opPrefixSize = len(OperatorMagic) + 4 + 8 // magic, version, body length
	maxOpBody    = 1 << 32
)

func modeName(m api.OperatorStateMode) string {
	switch m {
	case api.SplitList:
		return "split"
	case api.UnionList:
		return "union"
	case api.Broadcast:
		return "broadcast"
	}
	return ""
}

// encodeOperatorState encodes one operator state and the offsets of its
// elements (lists) in the file.
func encodeOperatorState(st *statebackend.OperatorState) ([]byte, []int64) {
	body := appendString(nil, st.Spec.Name)
	body = append(body, byte(st.Spec.Mode))
	body = appendString(body, st.Spec.KeyCodec)
	body = appendString(body, st.Spec.ValueCodec)
	var offs []int64
	if st.Spec.Mode == api.Broadcast {
		body = binary.AppendUvarint(body, uint64(len(st.Entries)))
		for _, e := range st.Entries {
			body = appendBytes(body, e[0])
			body = appendBytes(body, e[1])
		}
	} else {
		body = binary.AppendUvarint(body, uint64(len(st.Items)))
		for _, it := range st.Items {
			offs = append(offs, int64(opPrefixSize+len(body)))
			body = appendBytes(body, it)
		}
	}
	out := make([]byte, 0, opPrefixSize+len(body)+crcSize)
	out = append(out, OperatorMagic...)
	out = binary.BigEndian.AppendUint32(out, OperatorFormatVersion)
	out = binary.BigEndian.AppendUint64(out, uint64(len(body)))
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(body, castagnoli)), offs
}

// decodeOperatorState decodes an operator-state file; name is used in errors.
func decodeOperatorState(b []byte, name string) (statebackend.OperatorState, error) {
	var st statebackend.OperatorState
	bad := func(why string) error {
		return fmt.Errorf("operator state file %s: %s: %w", name, why, ErrCorrupt)
	}
	if len(b) < opPrefixSize+crcSize || string(b[:len(OperatorMagic)]) != OperatorMagic {
		return st, bad("not an operator-state file (magic " + strconv.Quote(OperatorMagic) + " missing)")
	}
	if v := binary.BigEndian.Uint32(b[8:]); v == 0 || v > OperatorFormatVersion {
		if v > OperatorFormatVersion {
			return st, fmt.Errorf("operator state file %s: format version %d (this build reads up to %d): %w", name, v, OperatorFormatVersion, ErrVersion)
		}
		return st, bad("format version 0")
	}
	n := binary.BigEndian.Uint64(b[12:])
	if n != uint64(len(b)-opPrefixSize-crcSize) {
		return st, bad(fmt.Sprintf("body of %d bytes in a file of %d", n, len(b)))
	}
	body := b[opPrefixSize : opPrefixSize+int(n)]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(b[opPrefixSize+int(n):]); got != want {
		return st, bad(fmt.Sprintf("checksum %08x, stored %08x", got, want))
	}
	d := &decoder{b: body}
	st.Spec.Name = string(d.bytes("state name", maxStringInField))
	st.Spec.Mode = api.OperatorStateMode(d.byte1("mode"))
	st.Spec.KeyCodec = string(d.bytes("key codec", maxStringInField))
	st.Spec.ValueCodec = string(d.bytes("value codec", maxStringInField))
	count := d.uvarint("element count")
	if d.err == nil && modeName(st.Spec.Mode) == "" {
		return st, bad(fmt.Sprintf("state %q has unknown mode %d", st.Spec.Name, st.Spec.Mode))
	}
	if d.err == nil && count > uint64(len(d.b)) {
		return st, bad(fmt.Sprintf("%d elements in %d bytes", count, len(d.b)))
	}
	for i := uint64(0); i < count && d.err == nil; i++ {
		if st.Spec.Mode == api.Broadcast {
			k := d.bytes("map key", maxOpBody)
			v := d.bytes("map value", maxOpBody)
			st.Entries = append(st.Entries, [2][]byte{k, v})
		} else {
			st.Items = append(st.Items, d.bytes("list element", maxOpBody))
		}
	}
	if d.err != nil {
		return st, fmt.Errorf("operator state file %s: %w", name, d.err)
	}
	if len(d.b) != 0 {
		return st, bad(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	return st, nil
}

// WriteOperatorState writes each operator state (one subtask's
// OperatorStore.Snapshot()) to its own file under t and returns one handle
// per state, in the order given, and the bytes written.
func WriteOperatorState(ctx context.Context, t Target, states []statebackend.OperatorState) ([]*checkpointv1.OperatorStateHandle, int64, error) {
	if err := t.validate(); err != nil {
		return nil, 0, err
	}
	var total int64
	out := make([]*checkpointv1.OperatorStateHandle, 0, len(states))
	for i := range states {
		st := &states[i]
		mode := modeName(st.Spec.Mode)
		if mode == "" {
			return nil, total, fmt.Errorf("write operator state %q: unknown mode %v", st.Spec.Name, st.Spec.Mode)
		}
		b, offs := encodeOperatorState(st)
		rel := t.path(t.Name + "-op-" + strconv.Itoa(i))
		if err := writeAll(ctx, t.Store, rel, b); err != nil {
			return nil, total, fmt.Errorf("write operator state %q: %w", st.Spec.Name, err)
		}
		total += int64(len(b))
		out = append(out, &checkpointv1.OperatorStateHandle{
			Name: st.Spec.Name, Mode: mode,
			File:    &checkpointv1.FileHandle{Path: rel, Size: int64(len(b))},
			Offsets: offs,
		})
	}
	return out, total, nil
}

func writeAll(ctx context.Context, s Store, rel string, b []byte) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.Create(wctx, rel)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		cancel()
		_ = w.Close()
		return err
	}
	return w.Close()
}

// ReadOperatorState reads the operator state handles of one old subtask.
func ReadOperatorState(ctx context.Context, open OpenFunc, handles []*checkpointv1.OperatorStateHandle) ([]statebackend.OperatorState, error) {
	out := make([]statebackend.OperatorState, 0, len(handles))
	for _, h := range handles {
		name := h.GetFile().GetPath()
		rc, err := open(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("read operator state %q: %w", h.GetName(), err)
		}
		// Operator state is small and read whole; a corrupt size cannot make
		// us allocate more than the file holds.
		b, err := io.ReadAll(io.LimitReader(rc, int64(maxOpBody+opPrefixSize+crcSize)))
		_ = rc.Close()
		if err != nil {
			return nil, fmt.Errorf("read operator state %q from %s: %w", h.GetName(), name, err)
		}
		st, err := decodeOperatorState(b, name)
		if err != nil {
			return nil, err
		}
		if st.Spec.Name != h.GetName() || modeName(st.Spec.Mode) != h.GetMode() {
			return nil, fmt.Errorf("operator state file %s holds %q (%s), its handle says %q (%s): %w", name, st.Spec.Name, modeName(st.Spec.Mode), h.GetName(), h.GetMode(), ErrMismatch)
		}
		out = append(out, st)
	}
	return out, nil
}

// RedistributeOperatorState reads the operator state of every old subtask
// (old[i] are subtask i's handles) and returns the share of each of n new
// subtasks (statebackend.Redistribute: split lists cut in contiguous parts,
// union lists to everyone, broadcast maps copied), ready for
// OperatorStore.Restore.
func RedistributeOperatorState(ctx context.Context, open OpenFunc, old [][]*checkpointv1.OperatorStateHandle, n int) ([][]statebackend.OperatorState, error) {
	all := make([][]statebackend.OperatorState, 0, len(old))
	for i, hs := range old {
		sts, err := ReadOperatorState(ctx, open, hs)
		if err != nil {
			return nil, fmt.Errorf("old subtask %d: %w", i, err)
		}
		all = append(all, sts)
	}
	return statebackend.Redistribute(all, n)
}
