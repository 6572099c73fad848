package window

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name.
const Name = "window"

// LateOutput is the side output of late records (read as `<id>.late`).
const LateOutput = "late"

// Errors of the operator's records.
var (
	// ErrNoTimestamp: the record carries no event time.
	ErrNoTimestamp = errors.New("record has no timestamp: give the source a watermarks strategy with a timestamp, or use a source that sets one")
	// ErrNotNumber: the field expression did not give a number.
	ErrNotNumber = expression.ErrNotNumber
)

func init() { api.Default.MustRegister(Type()) }

func positive(v any) error {
	if v.(time.Duration) < time.Millisecond {
		return errors.New("must be at least 1ms")
	}
	return nil
}

// Type returns the window operator type.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc: "Event-time tumbling or sliding windows per key: emits {\"key\", \"start\", \"end\", \"count\"} (plus sum, min, max of field) when the watermark passes a window's end. A record arriving after all its windows were emitted is late: it goes unchanged to the side output late (inputs: [<id>.late]), or is dropped when nothing reads it.",
		Fields: []api.Field{
			{Name: "size", Type: api.TypeDuration, Required: true, Validate: positive,
				Doc: "Window length, e.g. 1m."},
			{Name: "slide", Type: api.TypeDuration, Validate: positive,
				Doc: "Distance between window starts; absent: equal to size (tumbling windows)."},
			{Name: "field", Type: api.TypeExpression,
				Doc: "Numeric expression over the record's fields; when set, windows also carry its sum, min and max."},
		},
		Example:     "- id: perMinute\n  type: window\n  inputs: [gen]\n  keyBy: key\n  config:\n    size: 1m\n    slide: 10s\n    field: value\n- id: lateOut\n  type: print\n  inputs: [perMinute.late]\n",
		SideOutputs: []string{LateOutput},
		NewOperator: New,
	}
}

// New builds the operator from a decoded config.
func New(cfg api.Config) (api.Operator, error) {
	size, slide := cfg.Duration("size").Milliseconds(), cfg.Duration("slide").Milliseconds()
	if slide == 0 {
		slide = size
	}
	if size <= 0 || slide <= 0 {
		return nil, fmt.Errorf("window: size %dms and slide %dms must be positive", size, slide)
	}
	if slide > size {
		return nil, fmt.Errorf("window: slide %dms is larger than size %dms, which would drop records between windows: make slide at most size", slide, size)
	}
	o := &Operator{size: size, slide: slide}
	if f := cfg.String("field"); f != "" {
		p, err := expression.Compile(f)
		if err != nil {
			return nil, fmt.Errorf("window: field: %w", err)
		}
		o.prog = p
	}
	return o, nil
}

// acc is a window's aggregate.
type acc struct {
	Count int64   `json:"n"`
	Sum   float64 `json:"s,omitempty"`
	Min   float64 `json:"lo,omitempty"`
	Max   float64 `json:"hi,omitempty"`
}

// Operator is the window operator.
type Operator struct {
	size, slide int64
	prog        *expression.Program
	env         *expression.Env
	timers      api.TimerService
	acc         *api.ValueState[acc]
	late        api.Collector // side output "late"; nil: late records are dropped
	ns          [8]byte
	buf         []byte
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
	// A context without side outputs (a test harness) drops late records.
	if late, err := api.SideOutputOf(ctx, LateOutput); err == nil {
		o.late = late
	}
	o.env = expression.NewEnv()
	o.buf = make([]byte, 0, 128)
	o.acc, err = api.GetValueState(store, api.ValueStateDescriptor[acc]{Name: "acc", Codec: &api.JSONCodec[acc]{Name: "window-acc"}})
	return err
}

// namespace encodes a window start (order-preserving).
func (o *Operator) namespace(start int64) []byte {
	binary.BigEndian.PutUint64(o.ns[:], uint64(start)^(1<<63))
	return o.ns[:]
}

func (o *Operator) value(r api.Record) (float64, error) {
	if err := o.env.Reset(r.Value, r.Timestamp, r.Key); err != nil {
		return 0, err
	}
	return o.prog.EvalNumber(o.env)
}

// lastStart is the start of the latest window containing ts.
func (o *Operator) lastStart(ts int64) int64 {
	m := ts % o.slide
	if m < 0 {
		m += o.slide
	}
	return ts - m
}

// ProcessRecord adds r to every window that contains its timestamp.
func (o *Operator) ProcessRecord(r api.Record, _ api.Collector) error {
	ts := r.Timestamp
	if ts == api.NoTimestamp {
		return ErrNoTimestamp
	}
	var v float64
	if o.prog != nil {
		var err error
		if v, err = o.value(r); err != nil {
			return err
		}
	}
	wm := o.timers.CurrentWatermark()
	if o.lastStart(ts)+o.size-1 <= wm { // its last window was emitted: every one was
		if o.late != nil {
			o.late.Collect(r)
		}
		return nil
	}
	for start := o.lastStart(ts); start > ts-o.size; start -= o.slide {
		end := start + o.size
		if end-1 <= wm {
			continue // late for this window, which was emitted already
		}
		o.acc.SetNamespace(o.namespace(start))
		a, ok, err := o.acc.Lookup()
		if err != nil {
			return err
		}
		if !ok {
			a = acc{Min: v, Max: v}
			if err := o.timers.RegisterEventTimeTimer(end-1, o.namespace(start)); err != nil {
				return err
			}
		}
		a.Count++
		a.Sum += v
		a.Min, a.Max = min(a.Min, v), max(a.Max, v)
		if err := o.acc.Update(a); err != nil {
			return err
		}
	}
	return nil
}

// OnTimer emits the window that ends at t.Timestamp+1 and clears it.
func (o *Operator) OnTimer(t api.Timer, out api.Collector) error {
	if len(t.Namespace) != 8 {
		return fmt.Errorf("window timer with a %d-byte namespace, want 8", len(t.Namespace))
	}
	start := int64(binary.BigEndian.Uint64(t.Namespace) ^ (1 << 63))
	o.acc.SetNamespace(t.Namespace)
	a, ok, err := o.acc.Lookup()
	if err != nil || !ok {
		return err
	}
	if err := o.acc.Clear(); err != nil {
		return err
	}
	b := append(o.buf[:0], `{"key":`...)
	b = api.AppendJSONString(b, t.Key)
	b = append(b, `,"start":`...)
	b = strconv.AppendInt(b, start, 10)
	b = append(b, `,"end":`...)
	b = strconv.AppendInt(b, start+o.size, 10)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, a.Count, 10)
	if o.prog != nil {
		b = append(b, `,"sum":`...)
		b = strconv.AppendFloat(b, a.Sum, 'f', -1, 64)
		b = append(b, `,"min":`...)
		b = strconv.AppendFloat(b, a.Min, 'f', -1, 64)
		b = append(b, `,"max":`...)
		b = strconv.AppendFloat(b, a.Max, 'f', -1, 64)
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
