// Package ranked holds what the top and dedupe operators share: rows
// ordered by a number with a deterministic tie-break, their state codecs,
// and the writing of a row with extra fields.
//
// Order: a row ranks before another when its value is larger (descending)
// or smaller (ascending); rows with equal values rank by their bytes
// (smaller first), so the ranking of a set of rows does not depend on the
// order they arrived in, and parallel runs give the same answer.
package ranked

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Entry is one ranked row: its ordering value and its JSON bytes.
type Entry struct {
	V   float64
	Row []byte
}

// Before reports whether a ranks before b (desc: larger values first).
func Before(a, b Entry, desc bool) bool {
	if a.V != b.V {
		return (a.V > b.V) == desc
	}
	return bytes.Compare(a.Row, b.Row) < 0
}

// Insert puts e into the ranked list es (at most n long), returning the
// new list and e's 0-based position, or -1 when e does not make the first n.
func Insert(es []Entry, e Entry, n int, desc bool) ([]Entry, int) {
	i := len(es)
	for i > 0 && Before(e, es[i-1], desc) {
		i--
	}
	if i >= n {
		return es, -1
	}
	if len(es) < n {
		es = append(es, Entry{})
	}
	copy(es[i+1:], es[i:len(es)-1])
	es[i] = e
	return es, i
}

// ErrCorrupt is wrapped by decode errors of the codecs.
var ErrCorrupt = errors.New("ranked: corrupt state value")

// ListCodec stores a list of entries: uvarint count, then per entry the
// value's 8 bytes (IEEE 754, big-endian) and the uvarint-prefixed row.
type ListCodec struct{}

// ID implements api.Codec.
func (ListCodec) ID() string { return "ranked-list-v1" }

// Encode implements api.Codec.
func (ListCodec) Encode(dst []byte, es []Entry) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(len(es)))
	for _, e := range es {
		dst = appendEntry(dst, e)
	}
	return dst, nil
}

// Decode implements api.Codec (rows are copied into one allocation).
func (ListCodec) Decode(b []byte) ([]Entry, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: bad count", ErrCorrupt)
	}
	b = b[k:]
	buf := bytes.Clone(b) // one copy holds every row
	es := make([]Entry, 0, n)
	for range n {
		e, rest, err := readEntry(buf)
		if err != nil {
			return nil, err
		}
		es, buf = append(es, e), rest
	}
	return es, nil
}

// EntryCodec stores one entry as ListCodec stores each of its entries.
type EntryCodec struct{}

// ID implements api.Codec.
func (EntryCodec) ID() string { return "ranked-entry-v1" }

// Encode implements api.Codec.
func (EntryCodec) Encode(dst []byte, e Entry) ([]byte, error) { return appendEntry(dst, e), nil }

// Decode implements api.Codec.
func (EntryCodec) Decode(b []byte) (Entry, error) {
	e, _, err := readEntry(bytes.Clone(b))
	return e, err
}

func appendEntry(dst []byte, e Entry) []byte {
	dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(e.V))
	dst = binary.AppendUvarint(dst, uint64(len(e.Row)))
	return append(dst, e.Row...)
}

func readEntry(b []byte) (Entry, []byte, error) {
	if len(b) < 9 {
		return Entry{}, nil, fmt.Errorf("%w: short entry", ErrCorrupt)
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(b))
	l, k := binary.Uvarint(b[8:])
	if k <= 0 || uint64(len(b)-8-k) < l {
		return Entry{}, nil, fmt.Errorf("%w: bad row length", ErrCorrupt)
	}
	start := 8 + k
	end := start + int(l)
	return Entry{V: v, Row: b[start:end:end]}, b[end:], nil
}

// ErrNotObject: a row that gets extra fields must be a JSON object.
var ErrNotObject = errors.New("record is not a JSON object, so no field can be added to it: give the operator JSON objects (map or select can build them)")

// AppendWith appends row (a JSON object) with the members of extra (the
// text of `"name":value` pairs, comma-separated, without braces) added
// before its closing brace.
func AppendWith(dst, row []byte, extra []byte) ([]byte, error) {
	r := bytes.TrimSpace(row)
	if len(r) < 2 || r[0] != '{' || r[len(r)-1] != '}' {
		return dst, ErrNotObject
	}
	body := r[:len(r)-1]
	dst = append(dst, body...)
	if len(bytes.TrimSpace(body[1:])) > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, extra...)
	return append(dst, '}'), nil
}
