package exchange

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	exchangev1 "github.com/flowrt/flow/proto/flow/exchange/v1"
)

// codecName is the gRPC content-subtype of exchange streams
// (application/grpc+flow-exchange). Its wire format is exactly the protobuf
// encoding of the exchange messages; only the Go side differs:
//
//   - a ProducerMessage is marshaled straight into one pooled gRPC buffer
//     (no reflection, one copy of each frame);
//   - a consumer receives into a *frameBatch, whose frames are copied once
//     out of gRPC's receive buffers into buffers the remote channel recycles
//     (no allocation per frame in steady state, no intermediate copy).
//
// Every other message goes through gRPC's protobuf codec. A peer that talks
// plain "proto" (no content-subtype) is served by gRPC's protobuf codec as
// before, since the producer always sends *exchangev1.ProducerMessage.
const codecName = "flow-exchange"

// Field tags of ProducerMessage (see proto/flow/exchange/v1/exchange.proto).
const (
	tagFrames = 1<<3 | 2 // field 1, bytes
	tagEnd    = 2<<3 | 0 // field 2, varint
)

func init() { encoding.RegisterCodecV2(frameCodec{}) }

// frameCodec is registered under codecName; clients select it per stream
// with grpc.ForceCodecV2, servers find it by the content-subtype.
type frameCodec struct{}

func (frameCodec) Name() string { return codecName }

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2(protocodec.Name) }

// Marshal implements encoding.CodecV2.
func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	msg, ok := v.(*exchangev1.ProducerMessage)
	if !ok {
		return protoCodec().Marshal(v)
	}
	size := producerMessageSize(msg)
	if size == 0 {
		return nil, nil
	}
	if mem.IsBelowBufferPoolingThreshold(size) {
		return mem.BufferSlice{mem.SliceBuffer(appendProducerMessage(make([]byte, 0, size), msg))}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	*buf = appendProducerMessage((*buf)[:0], msg)
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func producerMessageSize(msg *exchangev1.ProducerMessage) int {
	n := 0
	for _, f := range msg.Frames {
		n += 1 + uvarintLen(uint64(len(f))) + len(f)
	}
	if msg.End {
		n += 2
	}
	return n
}

func appendProducerMessage(dst []byte, msg *exchangev1.ProducerMessage) []byte {
	for _, f := range msg.Frames {
		dst = append(dst, tagFrames)
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	if msg.End {
		dst = append(dst, tagEnd, 1)
	}
	return dst
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// frameAllocator hands out the buffers a received frame is copied into.
type frameAllocator interface {
	// frameBuffer returns a buffer of len n, or an error when the peer sent
	// more frames than it had credit for.
	frameBuffer(n int) ([]byte, error)
}

// frameBatch is what a remote channel receives a ProducerMessage into.
// Each frame is copied once, into a buffer from alloc.
type frameBatch struct {
	frames [][]byte
	end    bool
	alloc  frameAllocator
	err    error // the decode error, if Unmarshal failed
}

// Unmarshal implements encoding.CodecV2.
func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*frameBatch)
	if !ok {
		return protoCodec().Unmarshal(data, v)
	}
	b.frames, b.end, b.err = b.frames[:0], false, nil
	if err := b.decode(data); err != nil {
		b.err = err
		return err
	}
	return nil
}

func (b *frameBatch) decode(data mem.BufferSlice) error {
	r := sliceReader{bufs: data, left: data.Len()}
	for r.left > 0 {
		tag, err := r.uvarint()
		if err != nil {
			return err
		}
		switch tag {
		case tagFrames:
			n, err := r.length()
			if err != nil {
				return err
			}
			f, err := b.alloc.frameBuffer(n)
			if err != nil {
				return err
			}
			r.read(f)
			b.frames = append(b.frames, f)
		case tagEnd:
			v, err := r.uvarint()
			if err != nil {
				return err
			}
			b.end = v != 0
		default:
			if err := r.skipField(tag); err != nil {
				return err
			}
		}
	}
	return nil
}

// sliceReader reads protobuf wire data spread over the buffers of a
// mem.BufferSlice without materializing it.
type sliceReader struct {
	bufs mem.BufferSlice
	i    int    // index of the next buffer to load
	cur  []byte // unread part of the current buffer
	left int    // unread bytes in total
}

// load makes cur non-empty; the caller checked left > 0.
func (r *sliceReader) load() {
	for len(r.cur) == 0 {
		r.cur = r.bufs[r.i].ReadOnlyData()
		r.i++
	}
}

func (r *sliceReader) uvarint() (uint64, error) {
	if v, n := binary.Uvarint(r.cur); n > 0 {
		r.cur, r.left = r.cur[n:], r.left-n
		return v, nil
	}
	// Slow path: the varint crosses a buffer boundary (or is malformed).
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.left == 0 {
			return 0, fmt.Errorf("%w: truncated varint in producer message", ErrProtocol)
		}
		r.load()
		c := r.cur[0]
		r.cur, r.left = r.cur[1:], r.left-1
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: varint overflow in producer message", ErrProtocol)
}

// length reads a length prefix and checks it against the bytes left.
func (r *sliceReader) length() (int, error) {
	n, err := r.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(r.left) {
		return 0, fmt.Errorf("%w: field of %d bytes exceeds the %d bytes left in the producer message", ErrProtocol, n, r.left)
	}
	return int(n), nil
}

// read fills dst; the caller checked that enough bytes are left.
func (r *sliceReader) read(dst []byte) {
	r.left -= len(dst)
	for len(dst) > 0 {
		r.load()
		n := copy(dst, r.cur)
		dst, r.cur = dst[n:], r.cur[n:]
	}
}

// skip drops n bytes; the caller checked that enough are left.
func (r *sliceReader) skip(n int) {
	r.left -= n
	for n > 0 {
		r.load()
		k := min(n, len(r.cur))
		r.cur, n = r.cur[k:], n-k
	}
}

// skipField skips the value of an unknown field (forward compatibility).
func (r *sliceReader) skipField(tag uint64) error {
	var n int
	switch tag & 7 {
	case 0:
		_, err := r.uvarint()
		return err
	case 1:
		n = 8
	case 5:
		n = 4
	case 2:
		var err error
		if n, err = r.length(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: unsupported wire type %d of field %d in producer message", ErrProtocol, tag&7, tag>>3)
	}
	if r.left < n {
		return fmt.Errorf("%w: truncated field %d in producer message", ErrProtocol, tag>>3)
	}
	r.skip(n)
	return nil
}
