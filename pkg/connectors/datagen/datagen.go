// Package datagen is the `datagen` source: a deterministic generator of JSON
// records for tests, demos and benchmarks.
//
// Record n of the job-wide sequence is
//
//	{"key":"k<i>","seq":n,"value":v,"ts":t}
//
// where i = mix(seed, n) mod keys, v = mix'(seed, n) mod 1000, and t = n*1000/rate
// (milliseconds) or n when rate is 0; the record's event timestamp is t.
// Subtask s of p generates the n with n mod p == s in increasing order, so two
// runs with the same seed produce the same records. The position is the next
// n (decimal text); Restore resumes from it. With count > 0 the source ends
// after record count-1; with rate > 0 the job as a whole emits about rate
// records per second, split evenly across subtasks.
package datagen

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name.
const Name = "datagen"

// maxBatch bounds the records emitted per Next call.
const maxBatch = 512

func init() {
	api.Default.MustRegister(Type())
}

func nonNegative(v any) error {
	if v.(int64) < 0 {
		return errors.New("must not be negative")
	}
	return nil
}

// Type returns the datagen operator type (registered in api.Default).
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name,
		Kind: api.KindSource,
		Doc:  "Generates deterministic JSON records {\"key\",\"seq\",\"value\",\"ts\"} from a seed; bounded with count, throttled with rate.",
		Fields: []api.Field{
			{Name: "count", Type: api.TypeInt, Default: int64(0), Validate: nonNegative,
				Doc: "Total number of records for the whole job; 0 generates forever."},
			{Name: "keys", Type: api.TypeInt, Default: int64(100), Validate: func(v any) error {
				if v.(int64) < 1 {
					return errors.New("must be at least 1")
				}
				return nil
			}, Doc: "Number of distinct keys k0..k<keys-1>."},
			{Name: "rate", Type: api.TypeInt, Default: int64(0), Validate: nonNegative,
				Doc: "Records per second for the whole job, split across subtasks; 0 is unlimited."},
			{Name: "seed", Type: api.TypeInt, Default: int64(0),
				Doc: "Seed of the key and value sequence; equal seeds give equal records."},
		},
		Example: "- id: gen\n  type: datagen\n  parallelism: 2\n  config:\n    count: 100000\n    keys: 50\n    rate: 1000\n",
		NewSource: func(cfg api.Config) (api.Source, error) {
			return &Source{count: cfg.Int("count"), keys: max(cfg.Int("keys"), 1), rate: cfg.Int("rate"), seed: cfg.Int("seed")}, nil
		},
	}
}

// Source is one datagen subtask.
type Source struct {
	count, keys, rate, seed int64

	subtask, parallelism int64
	next                 int64 // next sequence number this subtask emits
	clock                api.Clock
	start                time.Time
	startN               int64   // next at start (for rate pacing)
	subRate              float64 // records/s of this subtask
	buf                  []byte
}

// Open implements api.Source.
func (s *Source) Open(ctx api.Context) error {
	info := ctx.Info()
	s.subtask, s.parallelism = int64(info.SubtaskIndex), int64(max(info.Parallelism, 1))
	if s.next < s.subtask || (s.next-s.subtask)%s.parallelism != 0 {
		s.next = s.subtask
	}
	s.clock = ctx.Clock()
	if s.rate > 0 {
		s.subRate = float64(s.rate) / float64(s.parallelism)
	}
	s.start = time.Time{}
	s.buf = make([]byte, 0, 128)
	return nil
}

// Next implements api.Source.
func (s *Source) Next(out api.SourceOutput) (api.SourceStatus, error) {
	limit := int64(maxBatch)
	if s.subRate > 0 {
		now := s.clock.Now()
		if s.start.IsZero() {
			s.start, s.startN = now, s.next
		}
		emitted := (s.next - s.startN) / s.parallelism
		due := int64(now.Sub(s.start).Seconds()*s.subRate) + 1 - emitted
		if due <= 0 {
			wait := time.Duration(float64(emitted) / s.subRate * float64(time.Second))
			return api.SourceStatus{WaitUntil: s.start.Add(wait)}, nil
		}
		limit = min(limit, due)
	}
	for i := int64(0); i < limit; i++ {
		if s.count > 0 && s.next >= s.count {
			return api.SourceStatus{End: true}, nil
		}
		n := s.next
		ts := s.timestamp(n)
		s.buf = AppendRecord(s.buf[:0], s.seed, s.keys, n, ts)
		out.Collect(api.Record{Value: s.buf, Timestamp: ts})
		s.next += s.parallelism
	}
	if s.count > 0 && s.next >= s.count {
		return api.SourceStatus{End: true}, nil
	}
	return api.SourceStatus{}, nil
}

func (s *Source) timestamp(n int64) int64 {
	if s.rate > 0 {
		return n * 1000 / s.rate
	}
	return n
}

// Position implements api.Source: the next sequence number as decimal text.
func (s *Source) Position() ([]byte, error) {
	return strconv.AppendInt(nil, s.next, 10), nil
}

// Restore implements api.Source.
func (s *Source) Restore(position []byte) error {
	n, err := strconv.ParseInt(string(position), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("datagen: restore position %q: want a non-negative decimal sequence number", position)
	}
	s.next = n
	s.start = time.Time{}
	return nil
}

// Close implements api.Source.
func (s *Source) Close() error { return nil }

// mix is splitmix64.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// KeyIndex returns i of record n's key "k<i>".
func KeyIndex(seed, keys, n int64) int64 {
	return int64(mix(uint64(seed)*0x2545f4914f6cdd1d^uint64(n)) % uint64(keys))
}

// Value returns record n's value field.
func Value(seed, n int64) int64 {
	return int64(mix(uint64(seed)^mix(uint64(n))) % 1000)
}

// AppendRecord appends the JSON of record n to dst.
func AppendRecord(dst []byte, seed, keys, n, ts int64) []byte {
	dst = append(dst, `{"key":"k`...)
	dst = strconv.AppendInt(dst, KeyIndex(seed, keys, n), 10)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendInt(dst, n, 10)
	dst = append(dst, `,"value":`...)
	dst = strconv.AppendInt(dst, Value(seed, n), 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, '}')
}
