package exchange

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	exchangev1 "github.com/flowrt/flow/proto/flow/exchange/v1"
)

// sliceAlloc is a frameAllocator with a frame limit that counts allocations.
type sliceAlloc struct {
	limit, n int
}

func (a *sliceAlloc) frameBuffer(n int) ([]byte, error) {
	if a.n >= a.limit {
		return nil, fmt.Errorf("%w: over limit %d", ErrProtocol, a.limit)
	}
	a.n++
	return make([]byte, n), nil
}

// split cuts b into buffers of at most size bytes, as gRPC's receive path
// hands a message over (one buffer per HTTP/2 data frame or less).
func split(b []byte, size int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		k := min(size, len(b))
		s = append(s, mem.SliceBuffer(b[:k]))
		b = b[k:]
	}
	return s
}

func testMessages() []*exchangev1.ProducerMessage {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB: two-byte+ length prefixes, pooled marshal
	return []*exchangev1.ProducerMessage{
		{},
		{End: true},
		{Frames: [][]byte{{1, 2, 3}}},
		{Frames: [][]byte{{}, {7}, bytes.Repeat([]byte{9}, 200)}, End: true},
		{Frames: [][]byte{big, big[:1000], {42}}},
	}
}

// TestCodecMatchesProtobuf: the codec's bytes are the protobuf encoding,
// and it decodes protobuf bytes cut at every buffer boundary size.
func TestCodecMatchesProtobuf(t *testing.T) {
	c := frameCodec{}
	for i, msg := range testMessages() {
		want, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("message %d: codec bytes differ from protobuf (%d vs %d bytes)", i, len(got), len(want))
		}
		out.Free()
		for _, size := range []int{1, 2, 3, 7, 16384, len(want) + 1} {
			b := frameBatch{alloc: &sliceAlloc{limit: len(msg.Frames)}}
			if err := c.Unmarshal(split(want, size), &b); err != nil {
				t.Fatalf("message %d, buffers of %d: %v", i, size, err)
			}
			if b.end != msg.End || len(b.frames) != len(msg.Frames) {
				t.Fatalf("message %d, buffers of %d: got %d frames end=%v, want %d end=%v", i, size, len(b.frames), b.end, len(msg.Frames), msg.End)
			}
			for j := range b.frames {
				if !bytes.Equal(b.frames[j], msg.Frames[j]) {
					t.Fatalf("message %d, buffers of %d: frame %d differs", i, size, j)
				}
			}
		}
	}
}

// TestCodecSkipsUnknownFields: fields a newer producer may add are skipped.
func TestCodecSkipsUnknownFields(t *testing.T) {
	var raw []byte
	raw = protowire.AppendTag(raw, 9, protowire.VarintType)
	raw = protowire.AppendVarint(raw, 300)
	raw = protowire.AppendTag(raw, 1, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte("frame"))
	raw = protowire.AppendTag(raw, 10, protowire.Fixed64Type)
	raw = protowire.AppendFixed64(raw, 1)
	raw = protowire.AppendTag(raw, 11, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte("future"))
	raw = protowire.AppendTag(raw, 12, protowire.Fixed32Type)
	raw = protowire.AppendFixed32(raw, 1)
	raw = protowire.AppendTag(raw, 2, protowire.VarintType)
	raw = protowire.AppendVarint(raw, 1)
	for _, size := range []int{1, 5, len(raw)} {
		b := frameBatch{alloc: &sliceAlloc{limit: 1}}
		if err := (frameCodec{}).Unmarshal(split(raw, size), &b); err != nil {
			t.Fatalf("buffers of %d: %v", size, err)
		}
		if len(b.frames) != 1 || string(b.frames[0]) != "frame" || !b.end {
			t.Fatalf("buffers of %d: got %q end=%v", size, b.frames, b.end)
		}
	}
}

// TestCodecRejectsMalformed: truncated input and excess frames are
// protocol errors, never panics or silent truncation.
func TestCodecRejectsMalformed(t *testing.T) {
	good, err := proto.Marshal(&exchangev1.ProducerMessage{Frames: [][]byte{[]byte("abcdef"), []byte("ghi")}, End: true})
	if err != nil {
		t.Fatal(err)
	}
	// Every strict prefix that cuts into a field must fail.
	for n := 1; n < len(good); n++ {
		if n == 8 || n == 13 { // right after a frame: a valid shorter message
			continue
		}
		b := frameBatch{alloc: &sliceAlloc{limit: 2}}
		err := (frameCodec{}).Unmarshal(split(good[:n], 3), &b)
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("prefix of %d bytes: got %v, want ErrProtocol", n, err)
		}
		if !errors.Is(b.err, ErrProtocol) {
			t.Fatalf("prefix of %d bytes: batch error %v, want ErrProtocol", n, b.err)
		}
	}
	b := frameBatch{alloc: &sliceAlloc{limit: 1}}
	if err := (frameCodec{}).Unmarshal(split(good, 4), &b); !errors.Is(err, ErrProtocol) {
		t.Fatalf("two frames against a limit of one: got %v, want ErrProtocol", err)
	}
	group := protowire.AppendTag(nil, 5, protowire.StartGroupType)
	b = frameBatch{alloc: &sliceAlloc{limit: 1}}
	if err := (frameCodec{}).Unmarshal(split(group, 4), &b); !errors.Is(err, ErrProtocol) {
		t.Fatalf("group wire type: got %v, want ErrProtocol", err)
	}
	overflow := bytes.Repeat([]byte{0xff}, 11)
	b = frameBatch{alloc: &sliceAlloc{limit: 1}}
	if err := (frameCodec{}).Unmarshal(split(overflow, 4), &b); !errors.Is(err, ErrProtocol) {
		t.Fatalf("varint overflow: got %v, want ErrProtocol", err)
	}
}

// TestCodecDelegatesOtherMessages: consumer messages use protobuf.
func TestCodecDelegatesOtherMessages(t *testing.T) {
	in := &exchangev1.ConsumerMessage{Msg: &exchangev1.ConsumerMessage_Credit{Credit: 7}}
	data, err := frameCodec{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out exchangev1.ConsumerMessage
	if err := (frameCodec{}).Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if out.GetCredit() != 7 {
		t.Fatalf("credit %d after round trip, want 7", out.GetCredit())
	}
}
