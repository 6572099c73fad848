package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// In-flight data of unaligned checkpoints: the exchange buffers a snapshot
// holds besides the operators' state (docs/checkpointing.md).
//
//   - Input in-flight data: buffers read on input channel c after the
//     snapshot was taken and before c's barrier (or overtaken by c's
//     barrier); InFlightHandle.channel = c, on the chain's first operator.
//     Restore processes them before reading the inputs.
//   - Output in-flight data: buffers an unaligned barrier overtook in the
//     task's result partitions; InFlightHandle.channel =
//     outputInFlightChannel, on the chain's last operator. Restore emits
//     them on their subpartitions before any new output.
//
// File format ("FLOWIFD1"): the 8-byte magic, entries, then a fixed32
// little-endian CRC32C of the entries. An entry is uvarint output index,
// uvarint subpartition (both 0 for input data), uvarint length and that many
// bytes of one exchange buffer (frames as in docs/formats/frames.md).
const inFlightMagic = "FLOWIFD1"

// outputInFlightChannel is the InFlightHandle.channel of output in-flight
// data.
const outputInFlightChannel = -1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorruptInFlight is wrapped by decodeInFlightFile.
var errCorruptInFlight = errors.New("corrupt in-flight data file")

func appendInFlight(dst []byte, output, sub int, buf []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(output))
	dst = binary.AppendUvarint(dst, uint64(sub))
	dst = binary.AppendUvarint(dst, uint64(len(buf)))
	return append(dst, buf...)
}

func encodeInFlightFile(body []byte) []byte {
	out := make([]byte, 0, len(inFlightMagic)+len(body)+4)
	out = append(out, inFlightMagic...)
	out = append(out, body...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(body, castagnoli))
}

// inFlightEntry is one buffer of an in-flight data file.
type inFlightEntry struct {
	output, sub int
	buf         []byte
}

func decodeInFlightFile(data []byte) ([]inFlightEntry, error) {
	if len(data) < len(inFlightMagic)+4 || string(data[:len(inFlightMagic)]) != inFlightMagic {
		return nil, fmt.Errorf("%w: missing %s header", errCorruptInFlight, inFlightMagic)
	}
	body := data[len(inFlightMagic) : len(data)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[len(data)-4:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorruptInFlight)
	}
	var out []inFlightEntry
	for len(body) > 0 {
		var v [3]uint64
		for i := range v {
			x, n := binary.Uvarint(body)
			if n <= 0 {
				return nil, fmt.Errorf("%w: bad entry header", errCorruptInFlight)
			}
			v[i], body = x, body[n:]
		}
		if v[2] > uint64(len(body)) || v[0] > 1<<20 || v[1] > 1<<20 {
			return nil, fmt.Errorf("%w: entry of %d bytes with %d left", errCorruptInFlight, v[2], len(body))
		}
		out = append(out, inFlightEntry{output: int(v[0]), sub: int(v[1]), buf: body[:v[2]:v[2]]})
		body = body[v[2]:]
	}
	return out, nil
}
