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
// runs with the same seed produce the same records. With count > 0 the source
// ends after record count-1; with rate > 0 the job as a whole emits about rate
// records per second, split evenly across subtasks.
//
// Datagen is an api.SplitSource: a split is an arithmetic sequence
// {"v":1,"stride":p,"next":n} of record numbers (subtask s of p starts with
// {stride p, next s}). A checkpoint stores each subtask's unfinished
// splits; a restore with another parallelism hands each split to one new
// subtask, which continues it at next, and when there are fewer splits than
// subtasks (api.SplitDivider) a split {stride, next} is cut into k
// interleaved splits {stride*k, next+i*stride}. So however often a job is
// rescaled, every record number below count is generated exactly once. A
// subtask with several splits emits their records in increasing number. A
// subtask left without splits ends (count > 0) or stays idle (count 0).
// Position/Restore (the next n as decimal text) remain for snapshots taken
// before splits, at the same parallelism.
package datagen

import (
	"errors"
	"strconv"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/connectors/internal/seqsplit"
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

// Source is one datagen subtask. It implements api.SplitSource and
// api.SplitDivider: its input is a set of splits, each an arithmetic
// sequence of record numbers {next, next+stride, next+2*stride, ...}.
type Source struct {
	count, keys, rate, seed int64

	subtask, parallelism int64
	opened               bool
	// splits this subtask generates, interleaved in increasing record
	// number; a split with next >= count (count > 0) is finished.
	splits   []seqsplit.Split
	restored *int64 // a Position restored before Open

	clock   api.Clock
	start   time.Time
	emitted int64   // records emitted since start (for rate pacing)
	subRate float64 // records/s of this subtask
	idle    bool    // marked idle: no split left in an unbounded job
	buf     []byte
}

// Open implements api.Source.
func (s *Source) Open(ctx api.Context) error {
	info := ctx.Info()
	s.subtask, s.parallelism = int64(info.SubtaskIndex), int64(max(info.Parallelism, 1))
	s.splits = seqsplit.Initial(s.subtask, s.parallelism)
	s.opened = true
	if s.restored != nil {
		if err := s.restorePosition(*s.restored); err != nil {
			return err
		}
		s.restored = nil
	}
	s.clock = ctx.Clock()
	if s.rate > 0 {
		s.subRate = float64(s.rate) / float64(s.parallelism)
	}
	s.start = time.Time{}
	s.buf = make([]byte, 0, 128)
	return nil
}

func (s *Source) finished(sp *seqsplit.Split) bool { return seqsplit.Finished(sp, s.count) }

// pick returns the index of the unfinished split with the smallest next
// record number, or -1.
func (s *Source) pick() int { return seqsplit.Pick(s.splits, s.count) }

// Next implements api.Source.
func (s *Source) Next(out api.SourceOutput) (api.SourceStatus, error) {
	cur := s.pick()
	if cur < 0 {
		if s.count > 0 {
			return api.SourceStatus{End: true}, nil
		}
		// Unbounded without splits (rescaled to more subtasks than
		// splits): stay idle.
		if !s.idle {
			out.MarkIdle()
			s.idle = true
		}
		return api.SourceStatus{WaitUntil: s.clock.Now().Add(time.Second)}, nil
	}
	limit := int64(maxBatch)
	if s.subRate > 0 {
		now := s.clock.Now()
		if s.start.IsZero() {
			s.start, s.emitted = now, 0
		}
		due := int64(now.Sub(s.start).Seconds()*s.subRate) + 1 - s.emitted
		if due <= 0 {
			wait := time.Duration(float64(s.emitted) / s.subRate * float64(time.Second))
			return api.SourceStatus{WaitUntil: s.start.Add(wait)}, nil
		}
		limit = min(limit, due)
	}
	single := len(s.splits) == 1
	for i := int64(0); i < limit; i++ {
		if !single && i > 0 {
			cur = s.pick()
		}
		if cur < 0 {
			return api.SourceStatus{End: true}, nil
		}
		sp := &s.splits[cur]
		if s.finished(sp) {
			if single {
				return api.SourceStatus{End: true}, nil
			}
			cur = -1
			continue
		}
		n := sp.Next
		ts := s.timestamp(n)
		s.buf = AppendRecord(s.buf[:0], s.seed, s.keys, n, ts)
		out.Collect(api.Record{Value: s.buf, Timestamp: ts})
		sp.Next += sp.Stride
		s.emitted++
	}
	if s.pick() < 0 && s.count > 0 {
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

// Splits implements api.SplitSource: the unfinished sequences.
func (s *Source) Splits() ([][]byte, error) {
	return seqsplit.Encode("datagen", s.splits, s.count)
}

// RestoreSplits implements api.SplitSource: the subtask generates exactly
// the given sequences from now on.
func (s *Source) RestoreSplits(splits [][]byte) error {
	out, err := seqsplit.Decode("datagen", splits)
	if err != nil {
		return err
	}
	s.splits, s.start, s.idle = out, time.Time{}, false
	return nil
}

// DivideSplits implements api.SplitDivider: each sequence {next, stride}
// is cut into k = ceil(n/len(splits)) interleaved sequences
// {next + i*stride, stride*k}, i < k, which together generate exactly the
// same record numbers.
func (s *Source) DivideSplits(splits [][]byte, n int) ([][]byte, error) {
	return seqsplit.Divide("datagen", splits, n, s.count)
}

// Position implements api.Source: the next sequence number as decimal
// text. It exists for snapshots taken before datagen became an
// api.SplitSource (the runtime stores Splits instead) and is defined only
// while the subtask generates its initial sequence.
func (s *Source) Position() ([]byte, error) {
	return seqsplit.Position("datagen", s.splits, s.parallelism)
}

// Restore implements api.Source: it resumes the subtask's initial sequence
// at a position from a snapshot taken before datagen became an
// api.SplitSource (same parallelism). It may be called before or after
// Open.
func (s *Source) Restore(position []byte) error {
	n, err := seqsplit.ParsePosition("datagen", position)
	if err != nil {
		return err
	}
	if !s.opened {
		s.restored = &n
		return nil
	}
	return s.restorePosition(n)
}

func (s *Source) restorePosition(n int64) error {
	splits, err := seqsplit.AtPosition("datagen", n, s.subtask, s.parallelism)
	if err != nil {
		return err
	}
	s.splits = splits
	s.start, s.idle = time.Time{}, false
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
