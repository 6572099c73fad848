package top

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/operators/internal/ranked"
)

// Name is the registered type name.
const Name = "top"

// MaxN bounds n: the rows of a key are one state value.
const MaxN = 1000

// Errors of the operator's records.
var (
	// ErrNoTimestamp: a windowed top needs event time.
	ErrNoTimestamp = errors.New("record has no timestamp: give the source a watermarks strategy with a timestamp, or drop window for a continuous top")
	// ErrNaN: the by expression gave NaN, which has no rank.
	ErrNaN = errors.New("by gave NaN, which has no rank: make the expression give a number, e.g. with a default")
)

func init() { api.Default.MustRegister(Type()) }

// Type returns the top operator type.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc: "The n rows with the largest (or smallest) value of an expression per key: continuously (emits each change of the ranking as rows with their rank) or per event-time tumbling window (emits the window's top n when it closes).",
		Fields: []api.Field{
			{Name: "n", Type: api.TypeInt, Required: true,
				Doc: "How many rows to keep per key (and window), 1 to 1000.",
				Validate: func(v any) error {
					if n := v.(int64); n < 1 || n > MaxN {
						return fmt.Errorf("n is %d: use 1 to %d", n, MaxN)
					}
					return nil
				}},
			{Name: "by", Type: api.TypeExpression, Required: true,
				Doc: "Numeric expression the rows are ranked by, e.g. `price`; ties rank by the rows' bytes."},
			{Name: "order", Type: api.TypeString, Default: "desc", Enum: []string{"desc", "asc"},
				Doc: "desc keeps the largest values (rank 1 = largest), asc the smallest."},
			{Name: "window", Type: api.TypeDuration,
				Doc: "Tumbling event-time window length, e.g. 10s: emit each window's top n when the watermark passes its end. Absent: a continuous top over all rows."},
			{Name: "rankField", Type: api.TypeString, Default: "rank",
				Doc: "Name of the member added to each emitted row with its rank (1 = first).",
				Validate: func(v any) error {
					if v.(string) == "" {
						return errors.New("rankField must not be empty")
					}
					return nil
				}},
		},
		Example:     "- id: top10\n  type: top\n  inputs: [bids]\n  keyBy: auction\n  config:\n    n: 10\n    by: price\n",
		NewOperator: New,
	}
}

// New builds the operator from a decoded config.
func New(cfg api.Config) (api.Operator, error) {
	n := cfg.Int("n")
	if n < 1 || n > MaxN {
		return nil, fmt.Errorf("top: n is %d: use 1 to %d", n, MaxN)
	}
	prog, err := expression.Compile(cfg.String("by"))
	if err != nil {
		return nil, fmt.Errorf("top: by: %w", err)
	}
	o := &Operator{n: int(n), prog: prog, desc: cfg.String("order") != "asc", rankField: cfg.String("rankField")}
	if o.rankField == "" {
		o.rankField = "rank"
	}
	if w := cfg.Duration("window"); w != 0 {
		if w < time.Millisecond {
			return nil, fmt.Errorf("top: window %v is shorter than 1ms", w)
		}
		o.size = w.Milliseconds()
	}
	return o, nil
}

// Operator is the top operator.
type Operator struct {
	n         int
	prog      *expression.Program
	desc      bool
	size      int64 // window length in ms; 0: continuous
	rankField string

	env    *expression.Env
	timers api.TimerService
	rows   *api.ValueState[[]ranked.Entry]
	ns     [8]byte
	buf    []byte
	extra  []byte
}

// Open declares the rows state (and the timer service when windowed).
func (o *Operator) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.size > 0 {
		if o.timers, err = api.TimerServiceOf(ctx); err != nil {
			return err
		}
	}
	o.env = expression.NewEnv()
	o.buf = make([]byte, 0, 256)
	o.rows, err = api.GetValueState(store, api.ValueStateDescriptor[[]ranked.Entry]{Name: "rows", Codec: ranked.ListCodec{}})
	return err
}

func (o *Operator) namespace(start int64) []byte {
	binary.BigEndian.PutUint64(o.ns[:], uint64(start)^(1<<63))
	return o.ns[:]
}

// ProcessRecord ranks r among its key's (window's) rows.
func (o *Operator) ProcessRecord(r api.Record, out api.Collector) error {
	if err := o.env.Reset(r.Value, r.Timestamp, r.Key); err != nil {
		return err
	}
	v, err := o.prog.EvalNumber(o.env)
	if err != nil {
		return err
	}
	if math.IsNaN(v) {
		return fmt.Errorf("top: %q: %w", o.prog.Source(), ErrNaN)
	}
	if o.size > 0 {
		if r.Timestamp == api.NoTimestamp {
			return ErrNoTimestamp
		}
		m := r.Timestamp % o.size
		if m < 0 {
			m += o.size
		}
		start := r.Timestamp - m
		if start+o.size-1 <= o.timers.CurrentWatermark() {
			return nil // late: the window was emitted
		}
		o.rows.SetNamespace(o.namespace(start))
	}
	es, ok, err := o.rows.Lookup()
	if err != nil {
		return err
	}
	if !ok && o.size > 0 {
		if err := o.timers.RegisterEventTimeTimer(o.namespaceEnd(), o.ns[:]); err != nil {
			return err
		}
	}
	es, at := ranked.Insert(es, ranked.Entry{V: v, Row: r.Value}, o.n, o.desc)
	if at < 0 {
		return nil
	}
	if err := o.rows.Update(es); err != nil {
		return err
	}
	if o.size > 0 {
		return nil
	}
	for i := at; i < len(es); i++ {
		if err := o.emit(out, r.Key, r.Timestamp, es[i].Row, i+1, -1); err != nil {
			return err
		}
	}
	return nil
}

// namespaceEnd is the timer time of the window in o.ns: its end - 1.
func (o *Operator) namespaceEnd() int64 {
	return int64(binary.BigEndian.Uint64(o.ns[:])^(1<<63)) + o.size - 1
}

// emit writes row with its rank (and, windowed, the window's start and
// end).
func (o *Operator) emit(out api.Collector, key []byte, ts int64, row []byte, rank int, start int64) error {
	x := append(o.extra[:0], '"')
	x = append(x, o.rankField...)
	x = append(x, `":`...)
	x = strconv.AppendInt(x, int64(rank), 10)
	if o.size > 0 {
		x = append(x, `,"start":`...)
		x = strconv.AppendInt(x, start, 10)
		x = append(x, `,"end":`...)
		x = strconv.AppendInt(x, start+o.size, 10)
	}
	o.extra = x
	b, err := ranked.AppendWith(o.buf[:0], row, x)
	if err != nil {
		return fmt.Errorf("top: %w", err)
	}
	o.buf = b
	out.Collect(api.Record{Key: key, Value: b, Timestamp: ts})
	return nil
}

// OnTimer emits the window ending at t.Timestamp+1 and clears it.
func (o *Operator) OnTimer(t api.Timer, out api.Collector) error {
	if len(t.Namespace) != 8 {
		return fmt.Errorf("top timer with a %d-byte namespace, want 8", len(t.Namespace))
	}
	start := int64(binary.BigEndian.Uint64(t.Namespace) ^ (1 << 63))
	o.rows.SetNamespace(t.Namespace)
	es, ok, err := o.rows.Lookup()
	if err != nil || !ok {
		return err
	}
	if err := o.rows.Clear(); err != nil {
		return err
	}
	for i, e := range es {
		if err := o.emit(out, t.Key, t.Timestamp, e.Row, i+1, start); err != nil {
			return err
		}
	}
	return nil
}

// Finish implements api.Operator.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
