// Package nexmark is the `nexmark` source: the event stream of the Nexmark
// benchmark (people, auctions and bids of an online auction site), generated
// deterministically from a seed. The model (model.go) follows the reference
// generator's description; the JSON of each kind and the config are in
// docs/nexmark.md.
//
// Event number n of the job-wide sequence depends only on (seed, n) and the
// config. Subtask s of p generates the numbers n with n mod p == s in
// increasing order. Like datagen, the source is an api.SplitSource and an
// api.SplitDivider: a split is an arithmetic sequence {"v":1,"stride":p,
// "next":n} of event numbers, so a job can be rescaled from a checkpoint and
// every event number below count is generated exactly once.
//
// The record timestamp is the event's dateTime. With outOfOrder > 1, event
// times go back by up to outOfOrder-1 events within groups of that many
// consecutive events (the reference's out-of-orderness); watermarks are the
// job's concern (a watermark strategy with that bound).
package nexmark

import (
	"fmt"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/connectors/internal/seqsplit"
)

// Name is the registered type name.
const Name = "nexmark"

// maxBatch bounds the events emitted per Next call.
const maxBatch = 256

func init() {
	api.Default.MustRegister(Type())
}

func atLeast(n int64) func(any) error {
	return func(v any) error {
		if v.(int64) < n {
			return fmt.Errorf("must be at least %d", n)
		}
		return nil
	}
}

// DefaultBaseTime is the event time of event 0 unless configured:
// 2024-01-01T00:00:00Z.
const DefaultBaseTime = 1704067200000

// Type returns the nexmark source type (registered in api.Default).
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name,
		Kind: api.KindSource,
		Doc:  "Generates the Nexmark benchmark's events (person, auction, bid in proportions 1:3:46) as flat JSON with an event_type field, deterministically from a seed.",
		Fields: []api.Field{
			{Name: "count", Type: api.TypeInt, Default: int64(0), Validate: atLeast(0),
				Doc: "Total number of events for the whole job; 0 generates forever."},
			{Name: "rate", Type: api.TypeInt, Default: int64(10000), Validate: atLeast(1),
				Doc: "Events per second of event time (the spacing of dateTime); with throttle also the wall-clock rate of the whole job."},
			{Name: "throttle", Type: api.TypeBool, Default: false,
				Doc: "Emit at rate events per second of wall-clock time (split across subtasks); false emits as fast as the job takes them."},
			{Name: "seed", Type: api.TypeInt, Default: int64(0),
				Doc: "Seed of every random choice; equal seeds give equal events."},
			{Name: "outOfOrder", Type: api.TypeInt, Default: int64(1), Validate: atLeast(1),
				Doc: "Out-of-orderness: event ids (and times) are permuted within groups of this many consecutive events; 1 keeps them in order."},
			{Name: "baseTime", Type: api.TypeInt, Default: int64(DefaultBaseTime),
				Doc: "Event time of the first event, in ms since the epoch."},
		},
		Example: "- id: events\n  type: nexmark\n  parallelism: 2\n  config:\n    count: 1000000\n    rate: 100000\n",
		NewSource: func(cfg api.Config) (api.Source, error) {
			return &Source{count: cfg.Int("count"), throttle: cfg.Bool("throttle"), params: Params{
				Seed: cfg.Int("seed"), Rate: max(cfg.Int("rate"), 1), BaseTime: cfg.Int("baseTime"), OutOfOrder: max(cfg.Int("outOfOrder"), 1)}}, nil
		},
	}
}

// time is the event's dateTime.
func (e *Event) time() int64 {
	switch e.Kind {
	case KindPerson:
		return e.Person.DateTime
	case KindAuction:
		return e.Auction.DateTime
	}
	return e.Bid.DateTime
}

// Source is one nexmark subtask. It implements api.SplitSource and
// api.SplitDivider: its input is a set of splits, each an arithmetic
// sequence of event numbers {next, next+stride, next+2*stride, ...}.
type Source struct {
	count    int64
	throttle bool
	params   Params
	gen      scratch

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
	if s.throttle {
		s.subRate = float64(s.params.Rate) / float64(s.parallelism)
	}
	s.start = time.Time{}
	s.buf = make([]byte, 0, 1024)
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
		ev := s.gen.generate(&s.params, sp.Next)
		s.buf = AppendJSON(s.buf[:0], &ev)
		out.Collect(api.Record{Value: s.buf, Timestamp: ev.time()})
		sp.Next += sp.Stride
		s.emitted++
	}
	if s.pick() < 0 && s.count > 0 {
		return api.SourceStatus{End: true}, nil
	}
	return api.SourceStatus{}, nil
}

// Splits implements api.SplitSource: the unfinished sequences.
func (s *Source) Splits() ([][]byte, error) {
	return seqsplit.Encode("nexmark", s.splits, s.count)
}

// RestoreSplits implements api.SplitSource: the subtask generates exactly
// the given sequences from now on.
func (s *Source) RestoreSplits(splits [][]byte) error {
	out, err := seqsplit.Decode("nexmark", splits)
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
	return seqsplit.Divide("nexmark", splits, n, s.count)
}

// Position implements api.Source: the next sequence number as decimal
// text. It exists for snapshots taken before nexmark had an
// api.SplitSource (the runtime stores Splits instead) and is defined only
// while the subtask generates its initial sequence.
func (s *Source) Position() ([]byte, error) {
	return seqsplit.Position("nexmark", s.splits, s.parallelism)
}

// Restore implements api.Source: it resumes the subtask's initial sequence
// at a position from a snapshot taken before nexmark had an
// api.SplitSource (same parallelism). It may be called before or after
// Open.
func (s *Source) Restore(position []byte) error {
	n, err := seqsplit.ParsePosition("nexmark", position)
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
	splits, err := seqsplit.AtPosition("nexmark", n, s.subtask, s.parallelism)
	if err != nil {
		return err
	}
	s.splits = splits
	s.start, s.idle = time.Time{}, false
	return nil
}

// Close implements api.Source.
func (s *Source) Close() error { return nil }
