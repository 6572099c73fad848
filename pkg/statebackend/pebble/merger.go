package pebble

import (
	"io"
	"slices"

	cpebble "github.com/cockroachdb/pebble/v2"
)

// listMerger concatenates merge operands (list appends) oldest first. Unlike
// Pebble's default concatenating merger, which copies the whole result on
// every older operand (quadratic in the number of appends), it collects the
// operands and concatenates once.
//
// The name is stored in the DB: changing it makes existing directories
// unreadable.
var listMerger = &cpebble.Merger{
	Name: "flow.list-append.v1",
	Merge: func(_, value []byte) (cpebble.ValueMerger, error) {
		m := &appendMerger{}
		m.newer = append(m.newer, slices.Clone(value))
		return m, nil
	},
}

type appendMerger struct {
	older [][]byte // newest first
	newer [][]byte // oldest first
}

func (m *appendMerger) MergeNewer(v []byte) error {
	m.newer = append(m.newer, slices.Clone(v))
	return nil
}

func (m *appendMerger) MergeOlder(v []byte) error {
	m.older = append(m.older, slices.Clone(v))
	return nil
}

func (m *appendMerger) Finish(bool) ([]byte, io.Closer, error) {
	n := 0
	for _, v := range m.older {
		n += len(v)
	}
	for _, v := range m.newer {
		n += len(v)
	}
	out := make([]byte, 0, n)
	for i := len(m.older) - 1; i >= 0; i-- {
		out = append(out, m.older[i]...)
	}
	for _, v := range m.newer {
		out = append(out, v...)
	}
	return out, nil, nil
}
