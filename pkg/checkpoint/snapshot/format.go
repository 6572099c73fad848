package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
)

// Canonical keyed-state format (docs/formats/state-snapshot.md).
const (
	// KeyedMagic starts every canonical keyed-state file.
	KeyedMagic = "FLOWKST1"
	// KeyedFormatVersion is the version this package writes. Readers accept
	// every version up to it.
	KeyedFormatVersion = 1

	// FormatCanonical, FormatHeap and FormatPebble are the values of
	// KeyedStateHandle.format. Heap snapshots are written in the canonical
	// format (FormatCanonical); FormatPebble handles are native Pebble
	// checkpoints. FormatHeap is accepted as a synonym of FormatCanonical.
	FormatCanonical = "canonical"
	FormatHeap      = "heap"
	FormatPebble    = "pebble"

	keyedPrefixSize  = len(KeyedMagic) + 4 + 4 // magic, version, header length
	sectionHeadSize  = 4 + 8                   // key group, body length
	crcSize          = 4
	maxHeaderSize    = 16 << 20
	maxSectionSize   = 1 << 40
	maxStates        = 1<<16 - 2
	timerStates      = 2 // state indexes 0 and 1 are event and processing timers
	maxStringInField = 1 << 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors of the package; test with errors.Is.
var (
	// ErrCorrupt: a snapshot file does not have the documented layout or a
	// checksum does not match. The message names the file and key group.
	ErrCorrupt = errors.New("corrupt state snapshot")
	// ErrVersion: a snapshot file was written by a newer format version.
	ErrVersion = errors.New("state snapshot written by a newer format version")
	// ErrMismatch: a snapshot does not fit the backend it is restored into
	// (max parallelism, key-group range) or its handle.
	ErrMismatch = errors.New("state snapshot does not match")
)

// KeyedHeader is the header of a canonical keyed-state file.
type KeyedHeader struct {
	Version        uint32
	MaxParallelism int
	KeyGroups      keygroup.Range
	// States in file order (sorted by name); a record's state index i >= 2
	// names States[i-2].
	States []api.StateSpec
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// encodeHeader returns the complete header: prefix, body and CRC.
func encodeHeader(h *KeyedHeader) []byte {
	body := binary.AppendUvarint(nil, uint64(h.MaxParallelism))
	body = binary.AppendUvarint(body, uint64(h.KeyGroups.Start))
	body = binary.AppendUvarint(body, uint64(h.KeyGroups.End))
	body = binary.AppendUvarint(body, uint64(len(h.States)))
	for _, s := range h.States {
		body = appendString(body, s.Name)
		body = append(body, byte(s.Kind))
		body = appendString(body, s.KeyCodec)
		body = appendString(body, s.ValueCodec)
		if s.TTL == nil {
			body = append(body, 0)
		} else {
			body = append(body, 1)
			body = binary.AppendUvarint(body, uint64(s.TTL.TTL.Milliseconds()))
			body = append(body, byte(s.TTL.Update), byte(s.TTL.Visibility), byte(s.TTL.Time))
		}
	}
	out := make([]byte, 0, keyedPrefixSize+len(body)+crcSize)
	out = append(out, KeyedMagic...)
	out = binary.BigEndian.AppendUint32(out, KeyedFormatVersion)
	out = binary.BigEndian.AppendUint32(out, uint32(len(body)))
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(body, castagnoli))
}

// decoder reads fields from a byte slice; the first failure sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %w", what, ErrCorrupt)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad " + what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string, limit uint64) []byte {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) || n > limit {
		d.fail(fmt.Sprintf("%s of %d bytes overruns its container", what, n))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("missing " + what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// readHeader reads and validates the header of a canonical keyed file and
// returns it with its total length in bytes.
func readHeader(r io.Reader) (*KeyedHeader, int64, error) {
	var prefix [keyedPrefixSize]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, 0, fmt.Errorf("read header: %w: %w", ErrCorrupt, err)
	}
	if string(prefix[:len(KeyedMagic)]) != KeyedMagic {
		return nil, 0, fmt.Errorf("magic %q is not %q (not a canonical keyed-state file): %w", prefix[:len(KeyedMagic)], KeyedMagic, ErrCorrupt)
	}
	h := &KeyedHeader{Version: binary.BigEndian.Uint32(prefix[8:])}
	if h.Version == 0 {
		return nil, 0, fmt.Errorf("format version 0: %w", ErrCorrupt)
	}
	if h.Version > KeyedFormatVersion {
		return nil, 0, fmt.Errorf("format version %d (this build reads up to %d): upgrade Flow to read it: %w", h.Version, KeyedFormatVersion, ErrVersion)
	}
	n := binary.BigEndian.Uint32(prefix[12:])
	if n > maxHeaderSize {
		return nil, 0, fmt.Errorf("header of %d bytes exceeds %d: %w", n, maxHeaderSize, ErrCorrupt)
	}
	buf := make([]byte, int(n)+crcSize)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, 0, fmt.Errorf("read header: %w: %w", ErrCorrupt, err)
	}
	body := buf[:n]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(buf[n:]); got != want {
		return nil, 0, fmt.Errorf("header checksum %08x, stored %08x: %w", got, want, ErrCorrupt)
	}
	d := &decoder{b: body}
	maxPar := d.uvarint("max parallelism")
	start := d.uvarint("key-group start")
	end := d.uvarint("key-group end")
	count := d.uvarint("state count")
	if d.err != nil {
		return nil, 0, d.err
	}
	if maxPar < 1 || maxPar > keygroup.UpperBoundMaxParallelism || start > end || end >= maxPar {
		return nil, 0, fmt.Errorf("max parallelism %d with key groups [%d, %d]: %w", maxPar, start, end, ErrCorrupt)
	}
	if count > maxStates {
		return nil, 0, fmt.Errorf("%d states: %w", count, ErrCorrupt)
	}
	h.MaxParallelism = int(maxPar)
	h.KeyGroups = keygroup.Range{Start: int(start), End: int(end)}
	for i := uint64(0); i < count && d.err == nil; i++ {
		var s api.StateSpec
		s.Name = string(d.bytes("state name", maxStringInField))
		s.Kind = api.StateKind(d.byte1("state kind"))
		s.KeyCodec = string(d.bytes("key codec", maxStringInField))
		s.ValueCodec = string(d.bytes("value codec", maxStringInField))
		switch d.byte1("TTL flag") {
		case 0:
		case 1:
			ms := d.uvarint("TTL")
			ttl := &api.TTLConfig{}
			if ms > uint64(1<<62)/uint64(time.Millisecond) {
				d.fail("TTL out of range")
			}
			ttl.TTL = time.Duration(ms) * time.Millisecond
			ttl.Update = api.TTLUpdate(d.byte1("TTL update"))
			ttl.Visibility = api.TTLVisibility(d.byte1("TTL visibility"))
			ttl.Time = api.TTLTime(d.byte1("TTL time"))
			if d.err == nil {
				if err := ttl.Validate(); err != nil {
					d.fail(fmt.Sprintf("state %q: %v", s.Name, err))
				}
			}
			s.TTL = ttl
		default:
			d.fail("TTL flag")
		}
		if d.err == nil && (s.Kind < api.StateValue || s.Kind > api.StateAggregating) {
			d.fail(fmt.Sprintf("state %q has unknown kind %d", s.Name, s.Kind))
		}
		if d.err == nil && i > 0 && h.States[i-1].Name >= s.Name {
			d.fail(fmt.Sprintf("state %q out of order or repeated", s.Name))
		}
		h.States = append(h.States, s)
	}
	if d.err != nil {
		return nil, 0, fmt.Errorf("header: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, 0, fmt.Errorf("header has %d trailing bytes: %w", len(d.b), ErrCorrupt)
	}
	return h, int64(keyedPrefixSize) + int64(n) + crcSize, nil
}

// headerFor builds the header of a snapshot of states over r, states sorted
// by name (so the file does not depend on declaration order).
func headerFor(maxPar int, r keygroup.Range, states []api.StateSpec) (*KeyedHeader, map[string]uint64, error) {
	states = slices.Clone(states)
	sort.Slice(states, func(i, j int) bool { return states[i].Name < states[j].Name })
	if len(states) > maxStates {
		return nil, nil, fmt.Errorf("snapshot of %d states: at most %d are supported", len(states), maxStates)
	}
	idx := make(map[string]uint64, len(states)+timerStates)
	idx[statebackend.EventTimersState] = 0
	idx[statebackend.ProcessingTimersState] = 1
	for i, s := range states {
		idx[s.Name] = uint64(i + timerStates)
	}
	return &KeyedHeader{Version: KeyedFormatVersion, MaxParallelism: maxPar, KeyGroups: r, States: states}, idx, nil
}

// section collects the encoded records of one key group; records are
// sorted by their bytes before they are written.
type section struct {
	data   []byte
	starts []int
	order  [][]byte
}

func (s *section) reset() {
	s.data, s.starts = s.data[:0], s.starts[:0]
}

// add encodes one entry:
//
//	uvarint state | uvarint len(key) key | uvarint len(ns) ns | uvarint len(uk) uk | uvarint len(value) value
func (s *section) add(state uint64, e *statebackend.Entry) {
	s.starts = append(s.starts, len(s.data))
	s.data = binary.AppendUvarint(s.data, state)
	s.data = appendBytes(s.data, e.Key)
	s.data = appendBytes(s.data, e.Namespace)
	s.data = appendBytes(s.data, e.UserKey)
	s.data = appendBytes(s.data, e.Value)
}

// capture returns an Iterate callback that appends each entry to its key
// group's section (secs[kg-r.Start]).
func capture(idx map[string]uint64, r keygroup.Range, secs []section) func(statebackend.Entry) error {
	var lastName string
	var lastIdx uint64
	return func(e statebackend.Entry) error {
		// Iterate yields long runs of one state: skip the map lookup.
		st := lastIdx
		if e.State != lastName || lastName == "" {
			var ok bool
			if st, ok = idx[e.State]; !ok {
				return fmt.Errorf("entry of state %q, which States() does not list", e.State)
			}
			lastName, lastIdx = e.State, st
		}
		if !r.Contains(e.KeyGroup) {
			return fmt.Errorf("entry of state %q in key group %d outside the snapshot's range %v", e.State, e.KeyGroup, r)
		}
		secs[e.KeyGroup-r.Start].add(st, &e)
		return nil
	}
}

// sectionWriter writes the header and the sections of one file.
type sectionWriter struct {
	w    io.Writer
	n    int64
	head [sectionHeadSize]byte
}

func (sw *sectionWriter) write(b []byte) error {
	n, err := sw.w.Write(b)
	sw.n += int64(n)
	return err
}

// writeSection sorts the records of s and writes the section of key group
// kg: key group (4) | body length (8) | records | crc32c (4).
func (sw *sectionWriter) writeSection(kg int, s *section) error {
	s.order = s.order[:0]
	for i, st := range s.starts {
		end := len(s.data)
		if i+1 < len(s.starts) {
			end = s.starts[i+1]
		}
		s.order = append(s.order, s.data[st:end:end])
	}
	slices.SortFunc(s.order, bytes.Compare)
	binary.BigEndian.PutUint32(sw.head[0:], uint32(kg))
	binary.BigEndian.PutUint64(sw.head[4:], uint64(len(s.data)))
	crc := crc32.Update(0, castagnoli, sw.head[:])
	if err := sw.write(sw.head[:]); err != nil {
		return err
	}
	for _, rec := range s.order {
		crc = crc32.Update(crc, castagnoli, rec)
		if err := sw.write(rec); err != nil {
			return err
		}
	}
	var tail [crcSize]byte
	binary.BigEndian.PutUint32(tail[:], crc)
	clear(s.order) // drop references to the records
	return sw.write(tail[:])
}

// sectionReader reads sections sequentially, after the header.
type sectionReader struct {
	r    io.Reader
	name string
	hdr  *KeyedHeader
	buf  bytes.Buffer
}

// next reads the next section and checks it is key group kg; the returned
// body is valid until the next call.
func (sr *sectionReader) next(kg int) ([]byte, error) {
	var head [sectionHeadSize]byte
	if _, err := io.ReadFull(sr.r, head[:]); err != nil {
		return nil, fmt.Errorf("snapshot file %s, key group %d: read section header: %w: %w", sr.name, kg, ErrCorrupt, err)
	}
	got := binary.BigEndian.Uint32(head[0:])
	if got != uint32(kg) {
		return nil, fmt.Errorf("snapshot file %s, key group %d: section is for key group %d: %w", sr.name, kg, got, ErrCorrupt)
	}
	n := binary.BigEndian.Uint64(head[4:])
	if n > maxSectionSize {
		return nil, fmt.Errorf("snapshot file %s, key group %d: section of %d bytes: %w", sr.name, kg, n, ErrCorrupt)
	}
	sr.buf.Reset()
	// Copy through a LimitReader: a corrupt length fails at end of file
	// instead of allocating it up front.
	if m, err := sr.buf.ReadFrom(io.LimitReader(sr.r, int64(n)+crcSize)); err != nil || m != int64(n)+crcSize {
		return nil, fmt.Errorf("snapshot file %s, key group %d: section truncated (%d of %d bytes): %w", sr.name, kg, m, n+crcSize, errors.Join(ErrCorrupt, err))
	}
	b := sr.buf.Bytes()
	body := b[:n]
	crc := crc32.Update(crc32.Update(0, castagnoli, head[:]), castagnoli, body)
	if want := binary.BigEndian.Uint32(b[n:]); crc != want {
		return nil, fmt.Errorf("snapshot file %s, key group %d: section checksum %08x, stored %08x: %w", sr.name, kg, crc, want, ErrCorrupt)
	}
	return body, nil
}

// decodeSection calls fn for each record of a checked section body.
func (sr *sectionReader) decodeSection(kg int, body []byte, fn func(statebackend.Entry) error) error {
	d := &decoder{b: body}
	for len(d.b) > 0 {
		st := d.uvarint("state index")
		e := statebackend.Entry{KeyGroup: kg}
		e.Key = d.bytes("key", maxSectionSize)
		e.Namespace = d.bytes("namespace", maxSectionSize)
		e.UserKey = d.bytes("user key", maxSectionSize)
		e.Value = d.bytes("value", maxSectionSize)
		if d.err != nil {
			return fmt.Errorf("snapshot file %s, key group %d: %w", sr.name, kg, d.err)
		}
		switch {
		case st == 0:
			e.State = statebackend.EventTimersState
		case st == 1:
			e.State = statebackend.ProcessingTimersState
		case st-timerStates < uint64(len(sr.hdr.States)):
			e.State = sr.hdr.States[st-timerStates].Name
		default:
			return fmt.Errorf("snapshot file %s, key group %d: state index %d of %d: %w", sr.name, kg, st, len(sr.hdr.States)+timerStates, ErrCorrupt)
		}
		if st < timerStates && (len(e.UserKey) != 8 || len(e.Value) != 0) {
			return fmt.Errorf("snapshot file %s, key group %d: timer with %d-byte timestamp and %d-byte value: %w", sr.name, kg, len(e.UserKey), len(e.Value), ErrCorrupt)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}
