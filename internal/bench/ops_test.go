package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin" // datagen, count, blackhole, ...
)

// registry holds the built-in operator types plus benchgen and bigstate.
var registry = newRegistry()

func newRegistry() *api.Registry {
	r := api.NewRegistry()
	for _, t := range api.Default.Types() {
		r.MustRegister(*t)
	}
	r.MustRegister(benchgenType())
	r.MustRegister(bigstateType())
	return r
}

func nonNegative(v any) error {
	if v.(int64) < 0 {
		return errors.New("must not be negative")
	}
	return nil
}

// benchgenType is a source in two phases. Fill: records 0..keys-1 carry the
// keys k0..k<keys-1> once each, at full speed, so the keyed state reaches
// its full size quickly. Update: record n >= keys carries key
// k<mix(n) mod keys>, at `rate` records/s for the whole job (0: full speed),
// forever. Record n is {"key":"k<i>","seq":n}; subtask s of p emits the n
// with n mod p == s; the position is the next n.
func benchgenType() api.OperatorType {
	return api.OperatorType{
		Name: "benchgen", Kind: api.KindSource,
		Doc: "Benchmark source: every key once (fill), then random keys at rate records/s, forever.",
		Fields: []api.Field{
			{Name: "keys", Type: api.TypeInt, Default: int64(1000), Validate: nonNegative, Doc: "distinct keys"},
			{Name: "rate", Type: api.TypeInt, Default: int64(0), Validate: nonNegative, Doc: "records/s after the fill; 0 is unlimited"},
		},
		NewSource: func(cfg api.Config) (api.Source, error) {
			return &benchgen{keys: max(cfg.Int("keys"), 1), rate: cfg.Int("rate")}, nil
		},
	}
}

type benchgen struct {
	keys, rate int64
	next, p    int64
	clock      api.Clock
	start      time.Time
	startN     int64
	buf        []byte
}

func (s *benchgen) Open(ctx api.Context) error {
	info := ctx.Info()
	sub, p := int64(info.SubtaskIndex), int64(max(info.Parallelism, 1))
	s.p = p
	if s.next < sub || (s.next-sub)%p != 0 {
		s.next = sub
	}
	s.clock = ctx.Clock()
	s.buf = make([]byte, 0, 64)
	return nil
}

func (s *benchgen) Next(out api.SourceOutput) (api.SourceStatus, error) {
	limit := int64(512)
	if s.next >= s.keys && s.rate > 0 {
		now := s.clock.Now()
		if s.start.IsZero() {
			s.start, s.startN = now, s.next
		}
		subRate := float64(s.rate) / float64(s.p)
		emitted := (s.next - s.startN) / s.p
		due := int64(now.Sub(s.start).Seconds()*subRate) + 1 - emitted
		if due <= 0 {
			return api.SourceStatus{WaitUntil: s.start.Add(time.Duration(float64(emitted) / subRate * float64(time.Second)))}, nil
		}
		limit = min(limit, due)
	}
	for i := int64(0); i < limit; i++ {
		n := s.next
		k := n
		if n >= s.keys {
			k = int64(mix(uint64(n)) % uint64(s.keys))
		}
		b := append(s.buf[:0], `{"key":"k`...)
		b = strconv.AppendInt(b, k, 10)
		b = append(b, `","seq":`...)
		b = strconv.AppendInt(b, n, 10)
		s.buf = append(b, '}')
		out.Collect(api.Record{Value: s.buf, Timestamp: n})
		s.next += s.p
		if s.next >= s.keys && n < s.keys && s.rate > 0 {
			break // fill done: pace from here on
		}
	}
	return api.SourceStatus{}, nil
}

func (s *benchgen) Position() ([]byte, error) { return strconv.AppendInt(nil, s.next, 10), nil }

func (s *benchgen) Restore(pos []byte) error {
	n, err := strconv.ParseInt(string(pos), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("benchgen: restore position %q: want a non-negative sequence number", pos)
	}
	s.next, s.start = n, time.Time{}
	return nil
}

func (s *benchgen) Close() error { return nil }

// bigstateType is a keyed operator that keeps one value of valueSize
// pseudo-random (incompressible) bytes per key, rewritten by every record
// of the key, and emits a small record per input: keyed state of
// keys x valueSize bytes.
func bigstateType() api.OperatorType {
	return api.OperatorType{
		Name: "bigstate", Kind: api.KindOperator, Keyed: true,
		Doc: "Benchmark operator: a ValueState of valueSize random bytes per key, rewritten by each record.",
		Fields: []api.Field{
			{Name: "valueSize", Type: api.TypeInt, Default: int64(1024), Validate: nonNegative, Doc: "bytes per key"},
		},
		NewOperator: func(cfg api.Config) (api.Operator, error) {
			return &bigstate{size: int(max(cfg.Int("valueSize"), 8))}, nil
		},
	}
}

type bigstate struct {
	size  int
	state *api.ValueState[[]byte]
	val   []byte
	seq   uint64
	out   []byte
}

func (o *bigstate) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	o.state, err = api.GetValueState(store, api.ValueStateDescriptor[[]byte]{Name: "blob", Codec: api.BytesCodec()})
	o.val = make([]byte, o.size)
	o.out = make([]byte, 0, 64)
	o.seq = uint64(ctx.Info().SubtaskIndex) << 48
	return err
}

func (o *bigstate) ProcessRecord(r api.Record, out api.Collector) error {
	o.seq++
	x := mix(o.seq)
	v := o.val
	for i := 0; i+8 <= len(v); i += 8 {
		// xorshift64: incompressible, ~1 ns per 8 bytes
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(v[i:], x)
	}
	if err := o.state.Update(v); err != nil {
		return err
	}
	o.out = append(o.out[:0], `{"n":`...)
	o.out = strconv.AppendUint(o.out, o.seq, 10)
	o.out = append(o.out, '}')
	out.Collect(api.Record{Key: r.Key, Value: o.out, Timestamp: r.Timestamp})
	return nil
}

func (o *bigstate) Finish(api.Collector) error { return nil }
func (o *bigstate) Close() error               { return nil }

// mix is splitmix64.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
