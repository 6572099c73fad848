package statebackend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/flowrt/flow/pkg/api"
)

// Cell addresses the state of one (state, key group, key, namespace).
type Cell struct {
	State     uint16
	KeyGroup  int
	Key       []byte
	Namespace []byte
}

// Store is the storage driver under the Engine: heap and pebble implement
// it. The Engine does codecs-free bookkeeping (TTL framing, list framing,
// timers, state registry) once for both; a Store only keeps bytes.
//
// A Store is used by one goroutine. Byte slices it returns are valid until
// the next call on it; slices passed in are not retained (copy them).
//
// Value, reducing and aggregating states use Get/Set/Delete; list states
// keep one value per cell made of framed elements and grow it with Append;
// map states use the *Entry methods.
type Store interface {
	Get(c *Cell) ([]byte, bool, error)
	Set(c *Cell, v []byte) error
	// Append appends v to the cell's value (creating it if absent).
	Append(c *Cell, v []byte) error
	Delete(c *Cell) error

	GetEntry(c *Cell, userKey []byte) ([]byte, bool, error)
	SetEntry(c *Cell, userKey, v []byte) error
	DeleteEntry(c *Cell, userKey []byte) error
	// RangeEntries visits the cell's map entries until fn returns false; fn
	// must not mutate the store.
	RangeEntries(c *Cell, fn func(userKey, v []byte) bool) error
	DeleteEntries(c *Cell) error

	// Scan visits every item of a state in one key group: each value cell
	// (userKey empty) or map entry. fn may mutate (Set, Delete, SetEntry,
	// DeleteEntry) the item it is visiting, and nothing else.
	Scan(state uint16, keyGroup int, fn func(key, ns, userKey, v []byte) error) error

	// Timers are encoded with EncodeTimer; their byte order is their firing
	// order within a domain. Adding a present timer and deleting an absent
	// one are no-ops.
	AddTimer(t []byte) error
	DeleteTimer(t []byte) error
	// FirstTimer returns the smallest timer of a domain.
	FirstTimer(d api.TimeDomain) ([]byte, bool, error)
	// ScanTimers visits the timers of key groups in r, in no set order; fn
	// must not mutate the store.
	ScanTimers(start, end int, fn func(t []byte) error) error

	// SaveState persists a state's registration (Pebble keeps it in the DB
	// so that reopening the directory finds its states); SavedStates
	// returns what was saved.
	SaveState(id uint16, spec []byte) error
	SavedStates() (map[uint16][]byte, error)

	// Flush makes all writes durable in the store (commits pending batches).
	Flush() error
	Close() error
}

// ErrCorrupt is wrapped when stored bytes do not have the layout the engine
// wrote (truncated TTL header or list frame).
var ErrCorrupt = errors.New("corrupt state bytes")

// EncodeTimer appends the encoding of a timer:
//
//	domain (1) | timestamp (8, big-endian, sign bit flipped) | key group (2, big-endian) |
//	uvarint len(key) | key | namespace
//
// Byte order is (domain, timestamp, key group, key, namespace) order, with
// keys of different lengths ordered by length first.
func EncodeTimer(dst []byte, d api.TimeDomain, ts int64, kg int, key, ns []byte) []byte {
	dst = append(dst, byte(d))
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts)^(1<<63))
	dst = binary.BigEndian.AppendUint16(dst, uint16(kg))
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return append(dst, ns...)
}

// DecodeTimer splits an encoded timer; Key and Namespace alias b.
func DecodeTimer(b []byte) (api.Timer, error) {
	if len(b) < 12 {
		return api.Timer{}, fmt.Errorf("timer %x: %w", b, ErrCorrupt)
	}
	t := api.Timer{
		Domain:    api.TimeDomain(b[0]),
		Timestamp: int64(binary.BigEndian.Uint64(b[1:]) ^ (1 << 63)),
		KeyGroup:  int(binary.BigEndian.Uint16(b[9:])),
	}
	n, w := binary.Uvarint(b[11:])
	if w <= 0 || n > uint64(len(b)-11-w) {
		return api.Timer{}, fmt.Errorf("timer %x: %w", b, ErrCorrupt)
	}
	rest := b[11+w:]
	t.Key = rest[:n:n]
	t.Namespace = rest[n:]
	return t, nil
}

// AppendCellKey appends uvarint len(key) | key | uvarint len(ns) | ns: the
// prefix-free encoding of a (key, namespace) pair both drivers use.
func AppendCellKey(dst, key, ns []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(len(ns)))
	return append(dst, ns...)
}

// SplitCellKey is the inverse of AppendCellKey; it returns the rest of b
// after the namespace when full is false (the user key in Pebble keys).
func SplitCellKey(b []byte) (key, ns, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, nil, fmt.Errorf("cell key %x: %w", b, ErrCorrupt)
	}
	key, b = b[w:w+int(n)], b[w+int(n):]
	n, w = binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, nil, fmt.Errorf("cell key %x: %w", b, ErrCorrupt)
	}
	return key, b[w : w+int(n)], b[w+int(n):], nil
}

// ttlExpired reports whether a value refreshed at ts has expired at now.
func ttlExpired(ts, now, ttl int64) bool {
	return now >= math.MinInt64+ttl && ts <= now-ttl
}
