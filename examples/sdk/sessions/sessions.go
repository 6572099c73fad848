// Package sessions is a session aggregator written against Flow's public
// Go SDK with keyed state and an event-time timer, the way Flink users
// write one. Keyed by user, it reads events {"key": user, "value": v} with
// event timestamps (the event's type is "t" + v mod types) and emits one
// summary per session:
//
//	{"key":"k3","start":1200,"end":1730,"events":12,"counts":{"t0":5,"t2":7}}
//
// A session ends when the user is inactive for gap: an event-time timer at
// last+gap, moved on every event, fires once the watermark passes it. An
// event at or after last+gap that arrives before that watermark closes the
// old session first, so the result does not depend on when watermarks
// arrive.
//
// State per user: a MapState of event-type counts, ValueStates of the
// session's start, its last event time and the event count; all cleared
// when the session is emitted.
package sessions

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flowrt/flow/pkg/api"
)

// Name is the type name jobs use (type: example-sessions).
const Name = "example-sessions"

// Type is the operator type to register.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc: "Summarises each user's sessions of activity (MapState of event-type counts, an event-time timer reset on each event). An example of a user-defined type.",
		Fields: []api.Field{
			{Name: "gap", Type: api.TypeDuration, Default: 30 * time.Minute, Doc: "Inactivity that ends a session (event time).",
				Validate: func(v any) error {
					if v.(time.Duration) < time.Millisecond {
						return errors.New("gap must be at least 1ms")
					}
					return nil
				}},
			{Name: "types", Type: api.TypeInt, Default: int64(4), Doc: "Event types: an event's type is t<value mod types>.",
				Validate: func(v any) error {
					if v.(int64) < 1 {
						return errors.New("types must be at least 1")
					}
					return nil
				}},
		},
		Example: "- id: sessions\n  type: example-sessions\n  inputs: [events]\n  keyBy: key\n  config: {gap: 30m}\n",
		NewOperator: func(cfg api.Config) (api.Operator, error) {
			return &Operator{gap: cfg.Duration("gap").Milliseconds(), types: cfg.Int("types")}, nil
		},
	}
}

// Operator is one subtask's instance.
type Operator struct {
	gap, types int64
	counts     *api.MapState[string, int64]
	start      *api.ValueState[int64]
	last       *api.ValueState[int64]
	events     *api.ValueState[int64]
	timers     api.TimerService
}

// Open declares the state and gets the timer service.
func (o *Operator) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.counts, err = api.GetMapState(store, api.MapStateDescriptor[string, int64]{
		Name: "counts", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec(),
	}); err != nil {
		return err
	}
	for name, s := range map[string]**api.ValueState[int64]{"start": &o.start, "last": &o.last, "events": &o.events} {
		if *s, err = api.GetValueState(store, api.ValueStateDescriptor[int64]{Name: name, Codec: api.Int64Codec()}); err != nil {
			return err
		}
	}
	o.timers, err = api.TimerServiceOf(ctx)
	return err
}

type event struct {
	Value int64 `json:"value"`
}

// ProcessRecord adds the event to the user's session, first closing one
// that the event's time shows has ended.
func (o *Operator) ProcessRecord(r api.Record, out api.Collector) error {
	var ev event
	if err := json.Unmarshal(r.Value, &ev); err != nil {
		return fmt.Errorf("example-sessions: event %q: %w", r.Value, err)
	}
	ts := r.Timestamp
	if ts == api.NoTimestamp {
		return errors.New("example-sessions: the event has no event timestamp: give the source watermarks.timestamp")
	}
	last, open, err := o.last.Lookup()
	if err != nil {
		return err
	}
	if open && ts >= last+o.gap {
		if err := o.timers.DeleteEventTimeTimer(last+o.gap, nil); err != nil {
			return err
		}
		if err := o.emit(r.Key, out); err != nil {
			return err
		}
		open = false
	}
	if open {
		if err := o.timers.DeleteEventTimeTimer(last+o.gap, nil); err != nil {
			return err
		}
	} else if err := o.start.Update(ts); err != nil {
		return err
	}
	typ := "t" + strconv.FormatInt(((ev.Value%o.types)+o.types)%o.types, 10)
	n, _, err := o.counts.Get(typ)
	if err != nil {
		return err
	}
	if err := o.counts.Put(typ, n+1); err != nil {
		return err
	}
	events, err := o.events.Value()
	if err != nil {
		return err
	}
	if err := o.events.Update(events + 1); err != nil {
		return err
	}
	if err := o.last.Update(max(ts, last)); err != nil {
		return err
	}
	return o.timers.RegisterEventTimeTimer(max(ts, last)+o.gap, nil)
}

// OnTimer emits the session whose inactivity gap passed.
func (o *Operator) OnTimer(t api.Timer, out api.Collector) error {
	return o.emit(t.Key, out)
}

// Summary is one emitted session.
type Summary struct {
	Key    string           `json:"key"`
	Start  int64            `json:"start"`
	End    int64            `json:"end"`
	Events int64            `json:"events"`
	Counts map[string]int64 `json:"counts"`
}

func (o *Operator) emit(key []byte, out api.Collector) error {
	s := Summary{Key: string(key), Counts: map[string]int64{}}
	var err error
	if s.Start, err = o.start.Value(); err != nil {
		return err
	}
	if s.End, err = o.last.Value(); err != nil {
		return err
	}
	if s.Events, err = o.events.Value(); err != nil {
		return err
	}
	if err := o.counts.Range(func(k string, v int64) bool { s.Counts[k] = v; return true }); err != nil {
		return err
	}
	// encoding/json sorts map keys: the output is deterministic.
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	out.Collect(api.Record{Key: key, Value: b, Timestamp: s.End})
	for _, c := range []func() error{o.counts.Clear, o.start.Clear, o.last.Clear, o.events.Clear} {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}

// Finish implements api.Operator: open sessions are emitted by their
// timers when the final watermark passes at the end of input.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
