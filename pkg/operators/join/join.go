package join

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/rawstate"
)

// Registered type names.
const (
	IntervalName = "interval-join"
	WindowName   = "window-join"
	RegularName  = "join"
)

var (
	// ErrNoTimestamp is returned for a record without event time given to
	// an event-time join (a record error: onError skip drops it).
	ErrNoTimestamp = errors.New("record has no timestamp: give the source a watermarks strategy with a timestamp, or use a source that sets one")
	// errCorrupt: a stored rows entry does not decode.
	errCorrupt = errors.New("join state: corrupt rows entry")
)

func init() {
	api.Default.MustRegister(IntervalType())
	api.Default.MustRegister(WindowType())
	api.Default.MustRegister(RegularType())
}

// rowsCodec and tsCodec name the encodings of the state (for savepoint
// compatibility checks).
const (
	rowsCodec = "join-rows"
	tsCodec   = "int64-ordered"
)

var (
	nsLeft  = []byte("l")
	nsRight = []byte("r")
)

// WindowType returns the window-join operator type.
func WindowType() api.OperatorType {
	positive := func(v any) error {
		if v.(time.Duration) < time.Millisecond {
			return errors.New("must be at least 1ms")
		}
		return nil
	}
	return api.OperatorType{
		Name: WindowName, Kind: api.KindOperator, Keyed: true, Inputs: 2,
		Doc: "Event-time window join of two keyed inputs: left and right records of the same key in the same tumbling (or sliding) " +
			"window are joined when the watermark passes the window's end; emits {\"left\":a,\"right\":b} at the window's last millisecond.",
		Fields: []api.Field{
			{Name: "size", Type: api.TypeDuration, Required: true, Validate: positive, Doc: "Window length, e.g. 1m."},
			{Name: "slide", Type: api.TypeDuration, Validate: func(v any) error {
				if v.(time.Duration) == 0 {
					return nil
				}
				return positive(v)
			}, Doc: "Slide of sliding windows (at most size); absent: tumbling windows (slide = size)."},
		},
		Example: "- id: joined\n  type: window-join\n  inputs: [orders, payments]\n  keyBy: order_id\n  config: {size: 1m}\n",
		NewOperator: func(cfg api.Config) (api.Operator, error) {
			size, slide := cfg.Duration("size").Milliseconds(), cfg.Duration("slide").Milliseconds()
			if slide == 0 {
				slide = size
			}
			if slide > size {
				return nil, fmt.Errorf("window-join: slide %dms is larger than size %dms, which would drop records between windows: make slide at most size", slide, size)
			}
			return &Window{size: size, slide: slide}, nil
		},
	}
}

// Join kinds of the regular join.
const (
	KindInner = "inner"
	KindLeft  = "left"
)

// RegularType returns the regular join operator type.
func RegularType() api.OperatorType {
	return api.OperatorType{
		Name: RegularName, Kind: api.KindOperator, Keyed: true, Inputs: 2,
		Doc: "Regular (unwindowed) join of two keyed inputs on the key: each record is joined with every row of the other side " +
			"seen for its key and stored. Without ttl its state grows forever. kind left also emits {\"left\":a,\"right\":null} for a " +
			"left record that finds no right row when it arrives.",
		Fields: []api.Field{
			{Name: "kind", Type: api.TypeString, Default: KindInner, Enum: []string{KindInner, KindLeft}, Doc: "inner or left (outer)."},
			{Name: "ttl", Type: api.TypeDuration, Validate: func(v any) error {
				if d := v.(time.Duration); d != 0 && d < time.Millisecond {
					return errors.New("ttl must be 0 (none) or at least 1ms")
				}
				return nil
			}, Doc: "How long a row stays in state after it arrived (processing time); absent: forever (state grows without bound)."},
		},
		Example: "- id: joined\n  type: join\n  inputs:\n    - {from: orders, keyBy: customer}\n    - {from: customers, keyBy: id}\n  config: {kind: left, ttl: 24h}\n",
		NewOperator: func(cfg api.Config) (api.Operator, error) {
			return &Regular{outer: cfg.String("kind") == KindLeft, ttl: cfg.Duration("ttl")}, nil
		},
	}
}

// --- shared helpers

// encTS encodes a timestamp so that byte order is numeric order.
func encTS(dst *[8]byte, ts int64) []byte {
	binary.BigEndian.PutUint64(dst[:], uint64(ts)^(1<<63))
	return dst[:]
}

func decTS(b []byte) (int64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), true
}

// appendRow appends one length-prefixed record to a rows entry.
func appendRow(dst, row []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(row)))
	return append(dst, row...)
}

// eachRow calls fn for every record of a rows entry.
func eachRow(b []byte, fn func(row []byte)) error {
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return errCorrupt
		}
		fn(b[w : w+int(n)])
		b = b[w+int(n):]
	}
	return nil
}

// emitter builds joined records in a reusable buffer.
type emitter struct {
	buf []byte
}

func (e *emitter) emit(out api.Collector, key, left, right []byte, ts int64) {
	b := append(e.buf[:0], `{"left":`...)
	b = append(b, left...)
	b = append(b, `,"right":`...)
	if right == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, right...)
	}
	b = append(b, '}')
	e.buf = b
	out.Collect(api.Record{Key: key, Value: b, Timestamp: ts})
}

func mapState(store api.KeyedStateStore, name string, ttl *api.TTLConfig) (rawstate.Map, error) {
	return rawState[rawstate.Map](store, api.StateSpec{Name: name, Kind: api.StateMap, KeyCodec: tsCodec, ValueCodec: rowsCodec, TTL: ttl})
}

func listState(store api.KeyedStateStore, name, codec string) (rawstate.List, error) {
	return rawState[rawstate.List](store, api.StateSpec{Name: name, Kind: api.StateList, ValueCodec: codec})
}

// rawState declares spec and returns its handle as the raw interface of
// its kind.
func rawState[T rawstate.State](store api.KeyedStateStore, spec api.StateSpec) (T, error) {
	var zero T
	raw, err := store.KeyedState(spec)
	if err != nil {
		return zero, err
	}
	h, ok := raw.(T)
	if !ok {
		return zero, fmt.Errorf("state %q: backend returned %T for a %v state", spec.Name, raw, spec.Kind)
	}
	return h, nil
}

// addRow appends row to the entry k of m.
func addRow(m rawstate.Map, k, row []byte, scratch *[]byte) error {
	cur, _, err := m.Get(k)
	if err != nil {
		return err
	}
	b := appendRow(append((*scratch)[:0], cur...), row)
	*scratch = b
	return m.Put(k, b)
}

// lateCounter registers the operator's count of dropped late records.
func lateCounter(ctx api.Context) (prometheus.Counter, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_join_late_records_total",
		Help: "Records an event-time join dropped because they were behind the watermark."})
	return c, ctx.Metrics().Register(c)
}

// Base is embedded for the no-op Finish and Close.
type base struct{}

// Finish implements api.Operator.
func (base) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (base) Close() error { return nil }

// --- window join

// Window is the window-join operator.
type Window struct {
	base
	size, slide int64
	left, right rawstate.Map
	timers      api.TimerService
	k           [8]byte
	scratch     []byte
	lrows       []byte
	e           emitter
	late        prometheus.Counter
}

var _ api.TwoInputOperator = (*Window)(nil)
var _ api.TimerHandler = (*Window)(nil)

// Open declares the two row maps (by window start).
func (o *Window) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.late, err = lateCounter(ctx); err != nil {
		return err
	}
	if o.timers, err = api.TimerServiceOf(ctx); err != nil {
		return err
	}
	if o.left, err = mapState(store, "left", nil); err != nil {
		return err
	}
	o.right, err = mapState(store, "right", nil)
	return err
}

// lastStart is the start of the latest window containing ts.
func (o *Window) lastStart(ts int64) int64 {
	m := ts % o.slide
	if m < 0 {
		m += o.slide
	}
	return ts - m
}

// ProcessRecord adds a left record to its windows.
func (o *Window) ProcessRecord(r api.Record, _ api.Collector) error { return o.add(r, o.left) }

// ProcessRecord2 adds a right record to its windows.
func (o *Window) ProcessRecord2(r api.Record, _ api.Collector) error { return o.add(r, o.right) }

func (o *Window) add(r api.Record, m rawstate.Map) error {
	ts := r.Timestamp
	if ts == api.NoTimestamp {
		return ErrNoTimestamp
	}
	wm := o.timers.CurrentWatermark()
	for s := o.lastStart(ts); s > ts-o.size; s -= o.slide {
		end := s + o.size - 1
		if wm != math.MinInt64 && end <= wm {
			o.late.Inc() // the window was joined already
			continue
		}
		if err := addRow(m, encTS(&o.k, s), r.Value, &o.scratch); err != nil {
			return err
		}
		if err := o.timers.RegisterEventTimeTimer(end, nil); err != nil {
			return err
		}
	}
	return nil
}

// OnTimer joins the rows of the window ending at the timer and drops them.
func (o *Window) OnTimer(t api.Timer, out api.Collector) error {
	k := encTS(&o.k, t.Timestamp-o.size+1)
	lv, lok, err := o.left.Get(k)
	if err != nil {
		return err
	}
	o.lrows = append(o.lrows[:0], lv...) // valid until the next state call
	rv, rok, err := o.right.Get(k)
	if err != nil {
		return err
	}
	if lok && rok {
		var rerr error
		if err := eachRow(o.lrows, func(l []byte) {
			if e := eachRow(rv, func(r []byte) { o.e.emit(out, t.Key, l, r, t.Timestamp) }); e != nil {
				rerr = e
			}
		}); err != nil {
			return err
		}
		if rerr != nil {
			return rerr
		}
	}
	if lok {
		if err := o.left.Delete(k); err != nil {
			return err
		}
	}
	if rok {
		return o.right.Delete(k)
	}
	return nil
}

// --- regular join

// Regular is the regular (unwindowed) join operator.
type Regular struct {
	base
	outer       bool
	ttl         time.Duration
	left, right rawstate.List
	e           emitter
}

var _ api.TwoInputOperator = (*Regular)(nil)

// Open declares the two row lists, with TTL when configured.
func (o *Regular) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	var ttl *api.TTLConfig
	if o.ttl > 0 {
		ttl = &api.TTLConfig{TTL: o.ttl}
	}
	list := func(name string) (rawstate.List, error) {
		raw, err := store.KeyedState(api.StateSpec{Name: name, Kind: api.StateList, ValueCodec: "bytes", TTL: ttl})
		if err != nil {
			return nil, err
		}
		l, ok := raw.(rawstate.List)
		if !ok {
			return nil, fmt.Errorf("state %q: backend returned %T for a list state", name, raw)
		}
		return l, nil
	}
	if o.left, err = list("left"); err != nil {
		return err
	}
	o.right, err = list("right")
	return err
}

// ProcessRecord joins a left record with the stored right rows and stores it.
func (o *Regular) ProcessRecord(r api.Record, out api.Collector) error {
	matched := false
	if err := o.right.Range(func(row []byte) bool {
		matched = true
		o.e.emit(out, r.Key, r.Value, row, r.Timestamp)
		return true
	}); err != nil {
		return err
	}
	if !matched && o.outer {
		o.e.emit(out, r.Key, r.Value, nil, r.Timestamp)
	}
	return o.left.Append(r.Value)
}

// ProcessRecord2 joins a right record with the stored left rows and stores it.
func (o *Regular) ProcessRecord2(r api.Record, out api.Collector) error {
	if err := o.left.Range(func(row []byte) bool {
		o.e.emit(out, r.Key, row, r.Value, r.Timestamp)
		return true
	}); err != nil {
		return err
	}
	return o.right.Append(r.Value)
}
