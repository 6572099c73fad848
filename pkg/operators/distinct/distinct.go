package distinct

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name.
const Name = "distinct"

// ErrNoTimestamp: windows need event time.
var ErrNoTimestamp = errors.New("record has no timestamp: give the source a watermarks strategy with a timestamp, or use a source that sets one")

// reserved are the output members the operator writes itself.
var reserved = map[string]bool{"key": true, "start": true, "end": true}

func init() { api.Default.MustRegister(Type()) }

// Type returns the distinct operator type.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc: "Distinct counts and filtered counts per key and event-time tumbling window: emits {\"key\", \"start\", \"end\", <name>: n, ...} when the watermark passes a window's end.",
		Fields: []api.Field{
			{Name: "window", Type: api.TypeDuration, Required: true,
				Doc: "Tumbling window length, e.g. 24h.",
				Validate: func(v any) error {
					if v.(time.Duration) < time.Millisecond {
						return errors.New("window must be at least 1ms")
					}
					return nil
				}},
			{Name: "distinct", Type: api.TypeStringMap,
				Doc:      "Output name: expression; the window's number of distinct non-null values, e.g. `bidders: bidder` or `cheapBidders: \"price < 10000 ? bidder : nil\"`.",
				Validate: checkNames},
			{Name: "count", Type: api.TypeStringMap,
				Doc:      "Output name: condition; the window's number of records for which it holds, e.g. `bids: \"true\"` or `cheapBids: price < 10000`.",
				Validate: checkNames},
		},
		Example:     "- id: daily\n  type: distinct\n  inputs: [bids]\n  keyBy: channel\n  config:\n    window: 24h\n    distinct: {bidders: bidder}\n    count: {bids: \"true\"}\n",
		NewOperator: New,
	}
}

func checkNames(v any) error {
	for name := range v.(map[string]string) {
		if reserved[name] || name == "" {
			return fmt.Errorf("output name %q is taken by the operator (key, start, end) or empty: pick another", name)
		}
	}
	return nil
}

// agg is one named output: a distinct count or a filtered count.
type agg struct {
	name     string
	prog     *expression.Program
	distinct bool
}

// New builds the operator from a decoded config.
func New(cfg api.Config) (api.Operator, error) {
	size := cfg.Duration("window")
	if size < time.Millisecond {
		return nil, fmt.Errorf("distinct: window %v is shorter than 1ms", size)
	}
	o := &Operator{size: size.Milliseconds()}
	ds, cs := cfg.StringMap("distinct"), cfg.StringMap("count")
	for name := range cs {
		if _, dup := ds[name]; dup {
			return nil, fmt.Errorf("distinct: %q is both a distinct and a count output: give each its own name", name)
		}
	}
	for _, m := range []struct {
		exprs    map[string]string
		distinct bool
	}{{ds, true}, {cs, false}} {
		for name, src := range m.exprs {
			if reserved[name] || name == "" {
				return nil, fmt.Errorf("distinct: output name %q is taken by the operator (key, start, end) or empty: pick another", name)
			}
			var p *expression.Program
			var err error
			if m.distinct {
				p, err = expression.Compile(src)
			} else {
				p, err = expression.CompileBool(src)
			}
			if err != nil {
				return nil, fmt.Errorf("distinct: %s: %w", name, err)
			}
			o.aggs = append(o.aggs, agg{name: name, prog: p, distinct: m.distinct})
		}
	}
	if len(o.aggs) == 0 {
		return nil, errors.New("distinct: nothing to count: set distinct (name: expression) or count (name: condition)")
	}
	sort.Slice(o.aggs, func(i, j int) bool { return o.aggs[i].name < o.aggs[j].name })
	return o, nil
}

// Operator is the distinct operator.
type Operator struct {
	size int64
	aggs []agg

	env    *expression.Env
	timers api.TimerService
	counts *api.ValueState[[]int64]
	seen   *api.MapState[[]byte, bool]
	ns     [8]byte
	kbuf   []byte
	buf    []byte
}

// countsCodec stores the counts as uvarints after a uvarint length.
type countsCodec struct{}

func (countsCodec) ID() string { return "distinct-counts-v1" }
func (countsCodec) Encode(dst []byte, v []int64) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	for _, n := range v {
		dst = binary.AppendUvarint(dst, uint64(n))
	}
	return dst, nil
}
func (countsCodec) Decode(b []byte) ([]int64, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errors.New("distinct counts: bad length")
	}
	b = b[k:]
	out := make([]int64, n)
	for i := range out {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errors.New("distinct counts: truncated")
		}
		out[i], b = int64(v), b[k:]
	}
	return out, nil
}

// Open declares the window state.
func (o *Operator) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.timers, err = api.TimerServiceOf(ctx); err != nil {
		return err
	}
	o.env = expression.NewEnv()
	o.buf = make([]byte, 0, 256)
	if o.counts, err = api.GetValueState(store, api.ValueStateDescriptor[[]int64]{Name: "counts", Codec: countsCodec{}}); err != nil {
		return err
	}
	o.seen, err = api.GetMapState(store, api.MapStateDescriptor[[]byte, bool]{Name: "seen", KeyCodec: api.BytesCodec(), ValueCodec: api.BoolCodec()})
	return err
}

func (o *Operator) namespace(start int64) []byte {
	binary.BigEndian.PutUint64(o.ns[:], uint64(start)^(1<<63))
	return o.ns[:]
}

// ProcessRecord adds r to its window's counts.
func (o *Operator) ProcessRecord(r api.Record, _ api.Collector) error {
	ts := r.Timestamp
	if ts == api.NoTimestamp {
		return ErrNoTimestamp
	}
	m := ts % o.size
	if m < 0 {
		m += o.size
	}
	start := ts - m
	if start+o.size-1 <= o.timers.CurrentWatermark() {
		return nil // late
	}
	if err := o.env.Reset(r.Value, r.Timestamp, r.Key); err != nil {
		return err
	}
	ns := o.namespace(start)
	o.counts.SetNamespace(ns)
	o.seen.SetNamespace(ns)
	counts, ok, err := o.counts.Lookup()
	if err != nil {
		return err
	}
	if !ok {
		counts = make([]int64, len(o.aggs))
		if err := o.timers.RegisterEventTimeTimer(start+o.size-1, ns); err != nil {
			return err
		}
	} else if len(counts) != len(o.aggs) {
		return fmt.Errorf("distinct: the window's state holds %d counts, the config has %d: restore with the config the state was written with", len(counts), len(o.aggs))
	}
	for i, a := range o.aggs {
		if !a.distinct {
			hit, err := a.prog.EvalBool(o.env)
			if err != nil {
				return err
			}
			if hit {
				counts[i]++
			}
			continue
		}
		v, err := a.prog.Eval(o.env)
		if err != nil {
			return err
		}
		if v == nil {
			continue
		}
		k := binary.AppendUvarint(o.kbuf[:0], uint64(i))
		k = expression.AppendKey(k, v)
		o.kbuf = k
		seen, err := o.seen.Contains(k)
		if err != nil {
			return err
		}
		if seen {
			continue
		}
		if err := o.seen.Put(k, true); err != nil {
			return err
		}
		counts[i]++
	}
	return o.counts.Update(counts)
}

// OnTimer emits the window ending at t.Timestamp+1 and clears it.
func (o *Operator) OnTimer(t api.Timer, out api.Collector) error {
	if len(t.Namespace) != 8 {
		return fmt.Errorf("distinct timer with a %d-byte namespace, want 8", len(t.Namespace))
	}
	start := int64(binary.BigEndian.Uint64(t.Namespace) ^ (1 << 63))
	o.counts.SetNamespace(t.Namespace)
	o.seen.SetNamespace(t.Namespace)
	counts, ok, err := o.counts.Lookup()
	if err != nil || !ok {
		return err
	}
	if err := o.counts.Clear(); err != nil {
		return err
	}
	if err := o.seen.Clear(); err != nil {
		return err
	}
	b := append(o.buf[:0], `{"key":`...)
	b = api.AppendJSONString(b, t.Key)
	b = append(b, `,"start":`...)
	b = strconv.AppendInt(b, start, 10)
	b = append(b, `,"end":`...)
	b = strconv.AppendInt(b, start+o.size, 10)
	for i, a := range o.aggs {
		b = append(b, ',')
		b = api.AppendJSONString(b, []byte(a.name))
		b = append(b, ':')
		if i < len(counts) {
			b = strconv.AppendInt(b, counts[i], 10)
		} else {
			b = append(b, '0')
		}
	}
	b = append(b, '}')
	o.buf = b
	out.Collect(api.Record{Key: t.Key, Value: b, Timestamp: t.Timestamp})
	return nil
}

// Finish implements api.Operator.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
