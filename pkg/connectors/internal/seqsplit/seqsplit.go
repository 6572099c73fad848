// Package seqsplit holds the splits of Flow's generator sources (datagen,
// nexmark): each split is an arithmetic sequence of record numbers
// {next, next+stride, next+2*stride, ...}. Subtask s of p starts with the
// sequence {s, p}; a checkpoint stores each subtask's unfinished splits
// (JSON, field v the format version); a restore at another parallelism
// divides or regroups them so that together they still generate exactly the
// same record numbers.
package seqsplit

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Split is one arithmetic sequence of record numbers.
type Split struct {
	V      int   `json:"v"`
	Stride int64 `json:"stride"`
	Next   int64 `json:"next"`
}

// Version is the format version of an encoded split.
const Version = 1

// Initial is subtask's first split of parallelism p.
func Initial(subtask, p int64) []Split {
	return []Split{{V: Version, Stride: p, Next: subtask}}
}

// Finished reports whether sp generates nothing more below count (count 0:
// unbounded, never finished).
func Finished(sp *Split, count int64) bool { return count > 0 && sp.Next >= count }

// Pick returns the index of the unfinished split with the smallest next
// record number, or -1.
func Pick(splits []Split, count int64) int {
	best := -1
	for i := range splits {
		if !Finished(&splits[i], count) && (best < 0 || splits[i].Next < splits[best].Next) {
			best = i
		}
	}
	return best
}

// Encode returns the unfinished splits' encodings (api.SplitSource.Splits);
// source names the source type in errors.
func Encode(source string, splits []Split, count int64) ([][]byte, error) {
	out := make([][]byte, 0, len(splits))
	for i := range splits {
		if Finished(&splits[i], count) {
			continue
		}
		b, err := json.Marshal(splits[i])
		if err != nil {
			return nil, fmt.Errorf("%s: encode split: %w", source, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func decode(source string, b []byte) (Split, error) {
	var sp Split
	if err := json.Unmarshal(b, &sp); err != nil {
		return sp, fmt.Errorf("%s: decode split %q: %w", source, b, err)
	}
	if sp.V != Version {
		return sp, fmt.Errorf("%s: split %q has format version %d; this release reads version %d", source, b, sp.V, Version)
	}
	if sp.Stride < 1 || sp.Next < 0 {
		return sp, fmt.Errorf("%s: split %q: want stride >= 1 and next >= 0", source, b)
	}
	return sp, nil
}

// Decode returns the splits of their encodings (api.SplitSource.RestoreSplits).
func Decode(source string, splits [][]byte) ([]Split, error) {
	out := make([]Split, 0, len(splits))
	for _, b := range splits {
		sp, err := decode(source, b)
		if err != nil {
			return nil, err
		}
		out = append(out, sp)
	}
	return out, nil
}

// Divide implements api.SplitDivider for n subtasks: each sequence
// {next, stride} is cut into k = ceil(n/len(splits)) interleaved sequences
// {next + i*stride, stride*k}, i < k, which together generate exactly the
// same record numbers; parts past count are dropped.
func Divide(source string, splits [][]byte, n int, count int64) ([][]byte, error) {
	if len(splits) == 0 || n <= len(splits) {
		return splits, nil
	}
	k := int64((n + len(splits) - 1) / len(splits))
	out := make([][]byte, 0, int64(len(splits))*k)
	for _, b := range splits {
		sp, err := decode(source, b)
		if err != nil {
			return nil, err
		}
		for i := int64(0); i < k; i++ {
			part := Split{V: Version, Stride: sp.Stride * k, Next: sp.Next + i*sp.Stride}
			if Finished(&part, count) {
				continue // past count: generates nothing
			}
			e, err := json.Marshal(part)
			if err != nil {
				return nil, fmt.Errorf("%s: encode split: %w", source, err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// Position is the next record number as decimal text, for snapshots taken
// before the source stored splits; it exists only while the subtask
// generates its initial sequence of parallelism p.
func Position(source string, splits []Split, p int64) ([]byte, error) {
	if len(splits) != 1 || splits[0].Stride != p {
		return nil, fmt.Errorf("%s: a position exists only for a subtask's initial sequence; this subtask generates %d sequences: use Splits", source, len(splits))
	}
	return strconv.AppendInt(nil, splits[0].Next, 10), nil
}

// ParsePosition reads a Position.
func ParsePosition(source string, position []byte) (int64, error) {
	n, err := strconv.ParseInt(string(position), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: restore position %q: want a non-negative decimal sequence number", source, position)
	}
	return n, nil
}

// AtPosition is subtask's initial sequence of parallelism p resumed at
// record number n.
func AtPosition(source string, n, subtask, p int64) ([]Split, error) {
	if n < subtask || (n-subtask)%p != 0 {
		return nil, fmt.Errorf("%s: restore position %d: subtask %d of %d generates only numbers n with n mod %d = %d: restore with the parallelism the position was taken at", source, n, subtask, p, p, subtask)
	}
	return []Split{{V: Version, Stride: p, Next: n}}, nil
}
