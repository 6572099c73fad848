package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flowrt/flow/pkg/api"
)

// Frame type codes. An exchange buffer holds one or more frames back to
// back; each frame starts with its type byte. See docs/formats/frames.md.
const (
	frameRecords      byte = 1 // fixed32 count, then count records
	frameWatermark    byte = 2 // varint timestamp
	frameStreamStatus byte = 3 // one byte: statusIdle or statusActive
	frameBarrier      byte = 4 // checkpoint barrier: uvarint id, varint timestamp, flags byte, uvarint options length, options
	frameCancel       byte = 5 // checkpoint cancellation marker: uvarint id
)

// Barrier flags (the byte after the timestamp).
const (
	barrierSavepoint   byte = 1 << 0 // a savepoint: always aligned
	barrierUnaligned   byte = 1 << 1 // unaligned: overtakes queued buffers (priority)
	barrierAtLeastOnce byte = 1 << 2 // the job checkpoints at least once
)

const (
	statusIdle   byte = 0
	statusActive byte = 1
)

// recordsHeaderLen is the type byte plus the fixed32 record count.
const recordsHeaderLen = 5

// ErrCorruptFrame is returned (wrapped) by the decoder for malformed input.
var ErrCorruptFrame = errors.New("corrupt exchange frame")

// frameWriter appends frames to one buffer. It keeps the position of the
// open record batch so consecutive records share one batch header.
type frameWriter struct {
	buf      []byte
	batchPos int // offset of the open batch's type byte, or -1
	count    uint32
}

func (w *frameWriter) reset(buf []byte) {
	w.buf = buf[:0]
	w.batchPos = -1
	w.count = 0
}

// recordSize is an upper bound of the bytes a record adds to a batch.
func recordSize(r *api.Record) int {
	return 3*binary.MaxVarintLen64 + len(r.Key) + len(r.Value)
}

// appendRecord appends r to the open batch, opening one if needed.
func (w *frameWriter) appendRecord(r *api.Record) {
	if w.batchPos < 0 {
		w.batchPos = len(w.buf)
		w.buf = append(w.buf, frameRecords, 0, 0, 0, 0)
		w.count = 0
	}
	b := appendLen(w.buf, len(r.Key))
	b = append(b, r.Key...)
	b = appendLen(b, len(r.Value))
	b = append(b, r.Value...)
	w.buf = binary.AppendVarint(b, r.Timestamp)
	w.count++
	binary.LittleEndian.PutUint32(w.buf[w.batchPos+1:], w.count)
}

// appendLen appends n as a uvarint, inlining the one-byte case.
func appendLen(b []byte, n int) []byte {
	if n < 0x80 {
		return append(b, byte(n))
	}
	return binary.AppendUvarint(b, uint64(n))
}

func (w *frameWriter) closeBatch() { w.batchPos = -1 }

func (w *frameWriter) appendWatermark(ts int64) {
	w.closeBatch()
	w.buf = append(w.buf, frameWatermark)
	w.buf = binary.AppendVarint(w.buf, ts)
}

func (w *frameWriter) appendStatus(idle bool) {
	w.closeBatch()
	s := statusActive
	if idle {
		s = statusIdle
	}
	w.buf = append(w.buf, frameStreamStatus, s)
}

// eventKind is what frameReader.next found.
type eventKind int

const (
	evNone eventKind = iota
	evRecord
	evWatermark
	evStatus
	evBarrier
	evCancel
)

// frameReader decodes a buffer in place: records point into the buffer.
type frameReader struct {
	buf     []byte
	pos     int
	pending uint32 // records left in the current batch
}

func (rd *frameReader) reset(buf []byte) {
	rd.buf = buf
	rd.pos = 0
	rd.pending = 0
}

// next decodes the next element. For evRecord, rec is filled with slices
// into the buffer; for evWatermark ts is set; for evStatus idle is set.
// evNone means the buffer is exhausted.
func (rd *frameReader) next(rec *api.Record) (kind eventKind, ts int64, idle bool, err error) {
	if rd.pending > 0 {
		if err := rd.readRecord(rec); err != nil {
			return evNone, 0, false, err
		}
		rd.pending--
		return evRecord, 0, false, nil
	}
	for rd.pos < len(rd.buf) {
		t := rd.buf[rd.pos]
		rd.pos++
		switch t {
		case frameRecords:
			if len(rd.buf)-rd.pos < 4 {
				return evNone, 0, false, fmt.Errorf("%w: truncated batch header at byte %d", ErrCorruptFrame, rd.pos)
			}
			rd.pending = binary.LittleEndian.Uint32(rd.buf[rd.pos:])
			rd.pos += 4
			if rd.pending == 0 {
				continue
			}
			if err := rd.readRecord(rec); err != nil {
				return evNone, 0, false, err
			}
			rd.pending--
			return evRecord, 0, false, nil
		case frameWatermark:
			v, n := binary.Varint(rd.buf[rd.pos:])
			if n <= 0 {
				return evNone, 0, false, fmt.Errorf("%w: bad watermark at byte %d", ErrCorruptFrame, rd.pos)
			}
			rd.pos += n
			return evWatermark, v, false, nil
		case frameStreamStatus:
			if rd.pos >= len(rd.buf) {
				return evNone, 0, false, fmt.Errorf("%w: truncated stream status", ErrCorruptFrame)
			}
			s := rd.buf[rd.pos]
			rd.pos++
			return evStatus, 0, s == statusIdle, nil
		case frameBarrier, frameCancel:
			// Control frames travel alone in their buffer (see
			// docs/formats/frames.md) and are decoded by decodeControl
			// before the buffer reaches the record path.
			return evNone, 0, false, fmt.Errorf("%w: checkpoint frame type %d inside a data buffer at byte %d", ErrCorruptFrame, t, rd.pos-1)
		default:
			return evNone, 0, false, fmt.Errorf("%w: unknown frame type %d at byte %d", ErrCorruptFrame, t, rd.pos-1)
		}
	}
	return evNone, 0, false, nil
}

func (rd *frameReader) readRecord(rec *api.Record) error {
	b, pos := rd.buf, rd.pos
	kl, n := uvarint(b, pos)
	if n <= 0 || kl > uint64(len(b)-pos-n) {
		return fmt.Errorf("%w: bad key length at byte %d", ErrCorruptFrame, pos)
	}
	pos += n
	if kl == 0 {
		rec.Key = nil
	} else {
		rec.Key = b[pos : pos+int(kl) : pos+int(kl)]
	}
	pos += int(kl)
	vl, n := uvarint(b, pos)
	if n <= 0 || vl > uint64(len(b)-pos-n) {
		return fmt.Errorf("%w: bad value length at byte %d", ErrCorruptFrame, pos)
	}
	pos += n
	rec.Value = b[pos : pos+int(vl) : pos+int(vl)]
	pos += int(vl)
	ts, n := binary.Varint(b[pos:])
	if n <= 0 {
		return fmt.Errorf("%w: bad timestamp at byte %d", ErrCorruptFrame, pos)
	}
	rd.pos = pos + n
	rec.Timestamp = ts
	return nil
}

// uvarint decodes the uvarint at b[pos:], inlining the one-byte case (key
// and value lengths below 128).
func uvarint(b []byte, pos int) (uint64, int) {
	if pos < len(b) && b[pos] < 0x80 {
		return uint64(b[pos]), 1
	}
	return binary.Uvarint(b[pos:])
}
