package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name.
const Name = "session"

// Errors of the operator's records.
var (
	// ErrNoTimestamp: the record carries no event time.
	ErrNoTimestamp = errors.New("record has no timestamp: give the source a watermarks strategy with a timestamp, or use a source that sets one")
	// ErrNotNumber: the field expression did not give a number.
	ErrNotNumber = expression.ErrNotNumber
)

func init() { api.Default.MustRegister(Type()) }

// Type returns the session operator type.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc: "Event-time session windows per key: a session ends gap after its key's last record; emits {\"key\", \"start\", \"end\", \"count\"} (plus the sum of field) when the watermark passes its end.",
		Fields: []api.Field{
			{Name: "gap", Type: api.TypeDuration, Required: true,
				Doc: "Inactivity gap that closes a session, e.g. 30s.",
				Validate: func(v any) error {
					if v.(time.Duration) < time.Millisecond {
						return errors.New("gap must be at least 1ms")
					}
					return nil
				}},
			{Name: "field", Type: api.TypeExpression,
				Doc: "Numeric expression over the record's fields; when set, sessions also carry its sum."},
		},
		Example:     "- id: visits\n  type: session\n  inputs: [clicks]\n  keyBy: user\n  config:\n    gap: 30m\n",
		NewOperator: New,
	}
}

// New builds the operator from a decoded config.
func New(cfg api.Config) (api.Operator, error) {
	gap := cfg.Duration("gap").Milliseconds()
	if gap <= 0 {
		return nil, fmt.Errorf("session: gap %v must be at least 1ms", cfg.Duration("gap"))
	}
	o := &Operator{gap: gap}
	if f := cfg.String("field"); f != "" {
		p, err := expression.Compile(f)
		if err != nil {
			return nil, fmt.Errorf("session: field: %w", err)
		}
		o.prog = p
	}
	return o, nil
}

// window is an open session of a key: [Start, End), its aggregate kept
// under namespace NS.
type window struct {
	Start int64 `json:"s"`
	End   int64 `json:"e"`
	NS    int64 `json:"ns"`
}

// acc is a session's aggregate.
type acc struct {
	Count int64   `json:"n"`
	Sum   float64 `json:"s,omitempty"`
}

// Operator is the session operator.
type Operator struct {
	gap      int64
	prog     *expression.Program
	env      *expression.Env
	timers   api.TimerService
	sessions *api.ValueState[[]window]
	acc      *api.ReducingState[acc]
	ns, ns2  [8]byte
	buf      []byte
	merged   []window
}

// Open declares the session state.
func (o *Operator) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.timers, err = api.TimerServiceOf(ctx); err != nil {
		return err
	}
	o.env = expression.NewEnv()
	o.buf = make([]byte, 0, 128)
	if o.sessions, err = api.GetValueState(store, api.ValueStateDescriptor[[]window]{Name: "sessions", Codec: &api.JSONCodec[[]window]{Name: "session-windows"}}); err != nil {
		return err
	}
	o.acc, err = api.GetReducingState(store, api.ReducingStateDescriptor[acc]{Name: "acc", Codec: &api.JSONCodec[acc]{Name: "session-acc"},
		Reduce: func(a, b acc) (acc, error) { return acc{Count: a.Count + b.Count, Sum: a.Sum + b.Sum}, nil }})
	return err
}

func encodeNS(dst *[8]byte, ns int64) []byte {
	binary.BigEndian.PutUint64(dst[:], uint64(ns)^(1<<63))
	return dst[:]
}

func (o *Operator) value(r api.Record) (float64, error) {
	if err := o.env.Reset(r.Value, r.Timestamp, r.Key); err != nil {
		return 0, err
	}
	return o.prog.EvalNumber(o.env)
}

// ProcessRecord adds r to its key's session, merging sessions it joins.
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
	w := window{Start: ts, End: ts + o.gap, NS: ts}
	if w.End-1 <= o.timers.CurrentWatermark() {
		return nil // late: its session would have fired already
	}
	all, err := o.sessions.Value()
	if err != nil {
		return err
	}
	// Split the key's sessions into those w touches (merged into w) and
	// the rest.
	o.merged = o.merged[:0]
	rest := all[:0]
	for _, s := range all {
		if s.Start <= w.End && w.Start <= s.End {
			o.merged = append(o.merged, s)
		} else {
			rest = append(rest, s)
		}
	}
	if len(o.merged) > 0 {
		// Keep the first merged session's namespace; fold the others in.
		w.NS = o.merged[0].NS
		var sources [][]byte
		for i, s := range o.merged {
			w.Start, w.End = min(w.Start, s.Start), max(w.End, s.End)
			if err := o.timers.DeleteEventTimeTimer(s.End-1, encodeNS(&o.ns, s.NS)); err != nil {
				return err
			}
			if i > 0 {
				sources = append(sources, slices.Clone(encodeNS(&o.ns, s.NS)))
			}
		}
		if len(sources) > 0 {
			if err := o.acc.MergeNamespaces(encodeNS(&o.ns, w.NS), sources...); err != nil {
				return err
			}
		}
	}
	ns := encodeNS(&o.ns, w.NS)
	o.acc.SetNamespace(ns)
	if err := o.acc.Add(acc{Count: 1, Sum: v}); err != nil {
		return err
	}
	if err := o.timers.RegisterEventTimeTimer(w.End-1, ns); err != nil {
		return err
	}
	return o.sessions.Update(append(rest, w))
}

// OnTimer emits the session whose timer fired and clears it.
func (o *Operator) OnTimer(t api.Timer, out api.Collector) error {
	if len(t.Namespace) != 8 {
		return fmt.Errorf("session timer with a %d-byte namespace, want 8", len(t.Namespace))
	}
	nsID := int64(binary.BigEndian.Uint64(t.Namespace) ^ (1 << 63))
	all, err := o.sessions.Value()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(all, func(w window) bool { return w.NS == nsID && w.End-1 == t.Timestamp })
	if i < 0 {
		return nil // moved by a merge; the session's current timer will fire
	}
	w := all[i]
	all = slices.Delete(all, i, i+1)
	if len(all) == 0 {
		err = o.sessions.Clear()
	} else {
		err = o.sessions.Update(all)
	}
	if err != nil {
		return err
	}
	o.acc.SetNamespace(encodeNS(&o.ns2, nsID))
	a, _, err := o.acc.Get()
	if err != nil {
		return err
	}
	if err := o.acc.Clear(); err != nil {
		return err
	}
	b := append(o.buf[:0], `{"key":`...)
	b = api.AppendJSONString(b, t.Key)
	b = append(b, `,"start":`...)
	b = strconv.AppendInt(b, w.Start, 10)
	b = append(b, `,"end":`...)
	b = strconv.AppendInt(b, w.End, 10)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, a.Count, 10)
	if o.prog != nil {
		b = append(b, `,"sum":`...)
		b = strconv.AppendFloat(b, a.Sum, 'f', -1, 64)
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
