// Package keygroup maps keys to key groups and key groups to subtasks, with
// the same arithmetic as Flink's KeyGroupRangeAssignment, so that rescaling
// moves whole key groups and a key's group never depends on parallelism.
//
// A key's group is murmur3_32(key bytes, seed 0) mod maxParallelism; the
// hash is stable across processes and releases (it is part of the snapshot
// format: changing it would scatter restored state).
package keygroup

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// DefaultMaxParallelism is the number of key groups when a job sets none.
const DefaultMaxParallelism = 128

// UpperBoundMaxParallelism is the largest allowed max parallelism (as Flink).
const UpperBoundMaxParallelism = 1 << 15

// Range is an inclusive range of key groups [Start, End]; empty when End < Start.
type Range struct {
	Start, End int
}

// Len is the number of key groups in the range.
func (r Range) Len() int {
	if r.End < r.Start {
		return 0
	}
	return r.End - r.Start + 1
}

// Contains reports whether kg lies in the range.
func (r Range) Contains(kg int) bool { return kg >= r.Start && kg <= r.End }

func (r Range) String() string { return fmt.Sprintf("[%d, %d]", r.Start, r.End) }

// Assign returns the key group of key.
func Assign(key []byte, maxParallelism int) int {
	return int(Murmur3(key) % uint32(maxParallelism))
}

// OperatorIndex returns the subtask that owns key group kg.
func OperatorIndex(kg, maxParallelism, parallelism int) int {
	return kg * parallelism / maxParallelism
}

// RangeFor returns the key groups owned by subtask index out of parallelism.
func RangeFor(maxParallelism, parallelism, index int) Range {
	start := (index*maxParallelism + parallelism - 1) / parallelism
	end := ((index+1)*maxParallelism - 1) / parallelism
	return Range{Start: start, End: end}
}

// Validate checks a (parallelism, maxParallelism) pair.
func Validate(parallelism, maxParallelism int) error {
	if maxParallelism < 1 || maxParallelism > UpperBoundMaxParallelism {
		return fmt.Errorf("maxParallelism %d is out of range: use 1..%d", maxParallelism, UpperBoundMaxParallelism)
	}
	if parallelism < 1 {
		return fmt.Errorf("parallelism %d is out of range: use at least 1", parallelism)
	}
	if parallelism > maxParallelism {
		return fmt.Errorf("parallelism %d exceeds maxParallelism %d: lower parallelism or raise maxParallelism", parallelism, maxParallelism)
	}
	return nil
}

// Murmur3 is MurmurHash3 x86 32-bit of b with seed 0.
func Murmur3(b []byte) uint32 {
	const c1, c2 = 0xcc9e2d51, 0x1b873593
	var h uint32
	n := len(b)
	for len(b) >= 4 {
		k := binary.LittleEndian.Uint32(b)
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
		b = b[4:]
	}
	var k uint32
	switch len(b) {
	case 3:
		k ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		k ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		k ^= uint32(b[0])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
	}
	h ^= uint32(n)
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
