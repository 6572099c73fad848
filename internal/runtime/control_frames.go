package runtime

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// barrierFrame is a decoded checkpoint barrier or cancellation marker.
type barrierFrame struct {
	cancel      bool
	id          int64
	timestampMs int64
	flags       byte
	// opts are the checkpoint's options as the coordinator sent them to the
	// sources (storage base and location, unaligned, timeout, incremental):
	// tasks downstream of the sources learn where to write from the barrier.
	opts *clusterv1.CheckpointOptions
}

func (b *barrierFrame) savepoint() bool   { return b.flags&barrierSavepoint != 0 }
func (b *barrierFrame) unaligned() bool   { return b.flags&barrierUnaligned != 0 }
func (b *barrierFrame) atLeastOnce() bool { return b.flags&barrierAtLeastOnce != 0 }

// isControlFrame reports whether an exchange buffer holds a barrier or a
// cancellation marker. Control frames are always alone in their buffer.
func isControlFrame(buf []byte) bool {
	return len(buf) > 0 && (buf[0] == frameBarrier || buf[0] == frameCancel)
}

// isPriorityFrame reports whether an exchange buffer is an unaligned
// barrier, which overtakes the buffers queued before it (the input gate's
// priority filter).
func isPriorityFrame(buf []byte) bool {
	if len(buf) < 4 || buf[0] != frameBarrier {
		return false
	}
	_, n := binary.Uvarint(buf[1:])
	if n <= 0 {
		return false
	}
	pos := 1 + n
	_, n = binary.Varint(buf[pos:])
	if n <= 0 || pos+n >= len(buf) {
		return false
	}
	return buf[pos+n]&barrierUnaligned != 0
}

// appendBarrier encodes a barrier frame.
func appendBarrier(dst []byte, id, timestampMs int64, flags byte, opts []byte) []byte {
	dst = append(dst, frameBarrier)
	dst = binary.AppendUvarint(dst, uint64(id))
	dst = binary.AppendVarint(dst, timestampMs)
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(len(opts)))
	return append(dst, opts...)
}

// appendCancel encodes a cancellation marker frame.
func appendCancel(dst []byte, id int64) []byte {
	dst = append(dst, frameCancel)
	return binary.AppendUvarint(dst, uint64(id))
}

// decodeControl decodes a buffer holding one barrier or cancellation marker.
func decodeControl(buf []byte) (barrierFrame, error) {
	var b barrierFrame
	if len(buf) == 0 {
		return b, fmt.Errorf("%w: empty control buffer", ErrCorruptFrame)
	}
	pos := 1
	id, n := binary.Uvarint(buf[pos:])
	if n <= 0 || id == 0 || id > 1<<62 {
		return b, fmt.Errorf("%w: bad checkpoint id in control frame", ErrCorruptFrame)
	}
	pos += n
	b.id = int64(id)
	if buf[0] == frameCancel {
		b.cancel = true
		if pos != len(buf) {
			return b, fmt.Errorf("%w: %d trailing bytes after cancellation marker %d", ErrCorruptFrame, len(buf)-pos, id)
		}
		return b, nil
	}
	if buf[0] != frameBarrier {
		return b, fmt.Errorf("%w: frame type %d is not a control frame", ErrCorruptFrame, buf[0])
	}
	ts, n := binary.Varint(buf[pos:])
	if n <= 0 {
		return b, fmt.Errorf("%w: bad timestamp in barrier %d", ErrCorruptFrame, id)
	}
	pos += n
	b.timestampMs = ts
	if pos >= len(buf) {
		return b, fmt.Errorf("%w: truncated barrier %d", ErrCorruptFrame, id)
	}
	b.flags = buf[pos]
	pos++
	l, n := binary.Uvarint(buf[pos:])
	if n <= 0 || l != uint64(len(buf)-pos-n) {
		return b, fmt.Errorf("%w: bad options length in barrier %d", ErrCorruptFrame, id)
	}
	pos += n
	b.opts = &clusterv1.CheckpointOptions{}
	if err := proto.Unmarshal(buf[pos:], b.opts); err != nil {
		return b, fmt.Errorf("%w: options of barrier %d: %w", ErrCorruptFrame, id, err)
	}
	return b, nil
}
