package api

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"
)

// Codec turns values of T into bytes and back. State backends store only
// bytes; every state descriptor names the codec of its values (and of its
// map keys).
//
// Encode appends the encoding of v to dst and returns the extended slice, so
// a caller can reuse one buffer and the hot path does not allocate. Decode
// must not retain b: the backend may reuse it after Decode returns.
//
// ID identifies the encoding (not the Go type alone): two codecs with the
// same ID must read each other's bytes. A state declared again with a codec
// of another ID is rejected, because the stored bytes would be misread.
type Codec[T any] interface {
	ID() string
	Encode(dst []byte, v T) ([]byte, error)
	Decode(b []byte) (T, error)
}

// ErrCodec is wrapped by codec errors (bad length, unknown version, malformed
// JSON). Backends add the state name and key around it.
var ErrCodec = errors.New("codec")

func codecErr(id, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrCodec, id, fmt.Sprintf(format, args...))
}

// Order-preserving codecs: the byte order of encodings equals the natural
// order of values, so MapState iteration on an ordered backend (Pebble)
// visits keys in value order.

type stringCodec struct{}

// StringCodec stores a string as its raw bytes (byte order = string order).
func StringCodec() Codec[string] { return stringCodec{} }

func (stringCodec) ID() string { return "string" }
func (stringCodec) Encode(dst []byte, v string) ([]byte, error) {
	return append(dst, v...), nil
}
func (stringCodec) Decode(b []byte) (string, error) { return string(b), nil }

type bytesCodec struct{}

// BytesCodec stores a byte slice as is; Decode returns a copy.
func BytesCodec() Codec[[]byte] { return bytesCodec{} }

func (bytesCodec) ID() string { return "bytes" }
func (bytesCodec) Encode(dst []byte, v []byte) ([]byte, error) {
	return append(dst, v...), nil
}
func (bytesCodec) Decode(b []byte) ([]byte, error) {
	return append([]byte(nil), b...), nil
}

type int64Codec struct{}

// Int64Codec stores an int64 as 8 big-endian bytes with the sign bit
// flipped, so byte order equals numeric order.
func Int64Codec() Codec[int64] { return int64Codec{} }

func (int64Codec) ID() string { return "int64" }
func (int64Codec) Encode(dst []byte, v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, uint64(v)^(1<<63)), nil
}
func (int64Codec) Decode(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, codecErr("int64", "want 8 bytes, got %d", len(b))
	}
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), nil
}

type intCodec struct{}

// IntCodec stores an int like Int64Codec.
func IntCodec() Codec[int] { return intCodec{} }

func (intCodec) ID() string { return "int64" }
func (intCodec) Encode(dst []byte, v int) ([]byte, error) {
	return int64Codec{}.Encode(dst, int64(v))
}
func (intCodec) Decode(b []byte) (int, error) {
	v, err := int64Codec{}.Decode(b)
	return int(v), err
}

type uint64Codec struct{}

// Uint64Codec stores a uint64 as 8 big-endian bytes.
func Uint64Codec() Codec[uint64] { return uint64Codec{} }

func (uint64Codec) ID() string { return "uint64" }
func (uint64Codec) Encode(dst []byte, v uint64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, v), nil
}
func (uint64Codec) Decode(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, codecErr("uint64", "want 8 bytes, got %d", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

type float64Codec struct{}

// Float64Codec stores a float64 as 8 bytes in an order-preserving form
// (negative values have all bits flipped, others only the sign bit).
func Float64Codec() Codec[float64] { return float64Codec{} }

func (float64Codec) ID() string { return "float64" }
func (float64Codec) Encode(dst []byte, v float64) ([]byte, error) {
	u := math.Float64bits(v)
	if u&(1<<63) != 0 {
		u = ^u
	} else {
		u |= 1 << 63
	}
	return binary.BigEndian.AppendUint64(dst, u), nil
}
func (float64Codec) Decode(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, codecErr("float64", "want 8 bytes, got %d", len(b))
	}
	u := binary.BigEndian.Uint64(b)
	if u&(1<<63) != 0 {
		u &^= 1 << 63
	} else {
		u = ^u
	}
	return math.Float64frombits(u), nil
}

type boolCodec struct{}

// BoolCodec stores a bool as one byte, 0 or 1.
func BoolCodec() Codec[bool] { return boolCodec{} }

func (boolCodec) ID() string { return "bool" }
func (boolCodec) Encode(dst []byte, v bool) ([]byte, error) {
	if v {
		return append(dst, 1), nil
	}
	return append(dst, 0), nil
}
func (boolCodec) Decode(b []byte) (bool, error) {
	if len(b) != 1 || b[0] > 1 {
		return false, codecErr("bool", "want one byte 0 or 1, got %x", b)
	}
	return b[0] == 1, nil
}

type timeCodec struct{}

// TimeCodec stores a time.Time as Unix nanoseconds (Int64Codec layout); the
// location is not kept (values decode in UTC).
func TimeCodec() Codec[time.Time] { return timeCodec{} }

func (timeCodec) ID() string { return "time-unixnano" }
func (timeCodec) Encode(dst []byte, v time.Time) ([]byte, error) {
	return int64Codec{}.Encode(dst, v.UnixNano())
}
func (timeCodec) Decode(b []byte) (time.Time, error) {
	n, err := int64Codec{}.Decode(b)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, n).UTC(), nil
}

// JSONCodec stores values of T (typically a struct) as a version byte
// followed by their JSON encoding.
//
// Versioning: the codec writes Version; it reads any version up to and
// including Version. Adding a field to T is compatible without a version
// bump: JSON decoding leaves the new field at its zero value for old bytes.
// For incompatible changes (renames, type changes) bump Version and set
// Upgrade, which receives the old version and old JSON and returns JSON of
// the current shape. Bytes written by a newer version than the codec knows
// fail to decode with an error wrapping ErrCodec.
type JSONCodec[T any] struct {
	// Name distinguishes codecs in ID; empty means the Go type name of T.
	Name string
	// Version written by Encode (0..255).
	Version uint8
	// Upgrade converts JSON of an older version; nil means old versions
	// decode as they are.
	Upgrade func(from uint8, data []byte) ([]byte, error)
}

// JSON returns a JSONCodec of version 0 named after T.
func JSON[T any]() *JSONCodec[T] { return &JSONCodec[T]{} }

// ID is "json:<name>": the version is not part of the ID, because any
// version up to Version decodes.
func (c *JSONCodec[T]) ID() string {
	if c.Name != "" {
		return "json:" + c.Name
	}
	return "json:" + reflect.TypeFor[T]().String()
}

func (c *JSONCodec[T]) Encode(dst []byte, v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("%w %s: encode: %w", ErrCodec, c.ID(), err)
	}
	dst = append(dst, c.Version)
	return append(dst, b...), nil
}

func (c *JSONCodec[T]) Decode(b []byte) (T, error) {
	var v T
	if len(b) == 0 {
		return v, codecErr(c.ID(), "empty value (missing version byte)")
	}
	ver, data := b[0], b[1:]
	if ver > c.Version {
		return v, codecErr(c.ID(), "value has version %d but the codec reads up to %d: deploy the newer job version", ver, c.Version)
	}
	if ver < c.Version && c.Upgrade != nil {
		up, err := c.Upgrade(ver, data)
		if err != nil {
			return v, fmt.Errorf("%w %s: upgrade from version %d: %w", ErrCodec, c.ID(), ver, err)
		}
		data = up
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%w %s: decode: %w", ErrCodec, c.ID(), err)
	}
	return v, nil
}
