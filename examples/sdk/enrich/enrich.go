// Package enrich is a two-input user type written against Flow's public Go
// SDK: the broadcast state pattern. Its second input is a stream of rules
// ({"rule": name, "min": threshold}), broadcast to every subtask, which
// keeps them in broadcast state (api.BroadcastState: replicated, so a
// restore at any parallelism hands every new subtask a copy). Its first
// input is an event stream keyed by key; each event comes out with the
// names of the rules whose min it reaches ({..., "rules": [...]}).
//
// An event is held in keyed state until the watermark reaches its
// timestamp: the watermark is the minimum of both inputs', so by then
// every rule stamped at or before the event has arrived, whatever the
// relative speed of the two inputs. That makes the output deterministic;
// an operator that enriched on arrival would miss rules still in flight.
package enrich

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/flowrt/flow/pkg/api"
)

// Name is the type name jobs use (type: example-enrich).
const Name = "example-enrich"

// Type is the operator type to register.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true, Inputs: 2,
		Doc: "Enriches a keyed event stream (first input) with the rules of a broadcast rules stream (second input) " +
			"that each event's value reaches; the broadcast state pattern. An example of a user-defined two-input type.",
		Fields: []api.Field{
			{Name: "field", Type: api.TypeString, Default: "value", Doc: "The numeric event field the rules' min applies to."},
		},
		Example: "- id: enriched\n  type: example-enrich\n  inputs:\n    - {from: events, keyBy: key}\n    - {from: rules, partitioning: broadcast}\n",
		NewOperator: func(cfg api.Config) (api.Operator, error) {
			return &Operator{field: cfg.String("field")}, nil
		},
	}
}

// Rule is one element of the rules stream; a rule with the name of an
// earlier one replaces it, and one with "delete": true removes it.
type Rule struct {
	Name   string  `json:"rule"`
	Min    float64 `json:"min"`
	Delete bool    `json:"delete,omitempty"`
}

// Operator is one subtask's instance.
type Operator struct {
	field   string
	rules   *api.BroadcastState[string, float64]
	pending *api.MapState[int64, []json.RawMessage]
	timers  api.TimerService
	buf     []byte
}

var (
	_ api.TwoInputOperator = (*Operator)(nil)
	_ api.TimerHandler     = (*Operator)(nil)
)

// Open declares the broadcast rules and the keyed pending events.
func (o *Operator) Open(ctx api.Context) error {
	ops, err := api.OperatorStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.rules, err = api.GetBroadcastState(ops, api.BroadcastStateDescriptor[string, float64]{
		Name: "rules", KeyCodec: api.StringCodec(), ValueCodec: api.Float64Codec()}); err != nil {
		return err
	}
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.timers, err = api.TimerServiceOf(ctx); err != nil {
		return err
	}
	o.pending, err = api.GetMapState(store, api.MapStateDescriptor[int64, []json.RawMessage]{
		Name: "pending", KeyCodec: api.Int64Codec(), ValueCodec: &api.JSONCodec[[]json.RawMessage]{Name: "enrich-pending"}})
	return err
}

// ProcessRecord holds an event until the watermark reaches its timestamp.
func (o *Operator) ProcessRecord(r api.Record, _ api.Collector) error {
	if r.Timestamp == api.NoTimestamp {
		return errors.New("event has no timestamp: give the events source a watermarks strategy")
	}
	held, _, err := o.pending.Get(r.Timestamp)
	if err != nil {
		return err
	}
	if err := o.pending.Put(r.Timestamp, append(held, json.RawMessage(append([]byte(nil), r.Value...)))); err != nil {
		return err
	}
	return o.timers.RegisterEventTimeTimer(r.Timestamp, nil)
}

// ProcessRecord2 applies a rule: every subtask receives every rule, so the
// broadcast state stays the same on all of them.
func (o *Operator) ProcessRecord2(r api.Record, _ api.Collector) error {
	var rule Rule
	if err := json.Unmarshal(r.Value, &rule); err != nil || rule.Name == "" {
		return fmt.Errorf("rule %s: want {\"rule\": name, \"min\": number}", r.Value)
	}
	if rule.Delete {
		return o.rules.Remove(rule.Name)
	}
	return o.rules.Put(rule.Name, rule.Min)
}

// OnTimer emits the events held for the timer's timestamp, enriched.
func (o *Operator) OnTimer(t api.Timer, out api.Collector) error {
	held, _, err := o.pending.Get(t.Timestamp)
	if err != nil {
		return err
	}
	for _, ev := range held {
		var fields map[string]any
		if err := json.Unmarshal(ev, &fields); err != nil {
			return fmt.Errorf("event %s: %w", ev, err)
		}
		v, _ := fields[o.field].(float64)
		names := []string{}
		if err := o.rules.Range(func(name string, min float64) bool {
			if v >= min {
				names = append(names, name)
			}
			return true
		}); err != nil {
			return err
		}
		sort.Strings(names)
		fields["rules"] = names
		if o.buf, err = json.Marshal(fields); err != nil {
			return err
		}
		out.Collect(api.Record{Key: t.Key, Value: o.buf, Timestamp: t.Timestamp})
	}
	return o.pending.Remove(t.Timestamp)
}

// Finish implements api.Operator: the final watermark fired every timer.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
