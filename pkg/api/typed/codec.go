package typed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/flowrt/flow/pkg/api"
)

// Codec turns record values into bytes and back: api.Codec, whose Encode
// appends to a buffer the caller reuses.
type Codec[T any] = api.Codec[T]

// JSON is the default record codec: a value is its plain JSON document (no
// version byte, unlike api.JSON, which is for state), as every built-in
// operator reads and writes records.
func JSON[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) ID() string { return "record-json:" + reflect.TypeFor[T]().String() }

func (c jsonCodec[T]) Encode(dst []byte, v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("%w %s: encode: %w", api.ErrCodec, c.ID(), err)
	}
	return append(dst, b...), nil
}

func (c jsonCodec[T]) Decode(b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("%w %s: decode: %w", api.ErrCodec, c.ID(), err)
	}
	return v, nil
}

// instance gives each operator instance its own encoder, so that encoding
// reuses the instance's buffer (codecs themselves are shared by subtasks).
func (c jsonCodec[T]) instance() Codec[T] {
	e := &jsonEncoder[T]{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}

type jsonEncoder[T any] struct {
	jsonCodec[T]
	buf bytes.Buffer
	enc *json.Encoder
}

func (e *jsonEncoder[T]) Encode(dst []byte, v T) ([]byte, error) {
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		return dst, fmt.Errorf("%w %s: encode: %w", api.ErrCodec, e.ID(), err)
	}
	return append(dst, bytes.TrimSuffix(e.buf.Bytes(), []byte("\n"))...), nil
}

// instancer is implemented by codecs that want one instance per operator.
type instancer[T any] interface{ instance() Codec[T] }

func instanceOf[T any](c Codec[T]) Codec[T] {
	if i, ok := c.(instancer[T]); ok {
		return i.instance()
	}
	return c
}

// Bytes passes record values through as they are (the function sees the
// record's bytes, valid during the call only: copy what you keep).
func Bytes() Codec[[]byte] { return rawBytes{} }

type rawBytes struct{}

func (rawBytes) ID() string                                  { return "record-bytes" }
func (rawBytes) Encode(dst []byte, v []byte) ([]byte, error) { return append(dst, v...), nil }
func (rawBytes) Decode(b []byte) ([]byte, error)             { return b, nil }

// String reads and writes record values as strings of their bytes.
func String() Codec[string] { return api.StringCodec() }
