// Package enrich is a two-input user type written against Flow's public Go
// SDK: the broadcast state pattern, as a typed
// KeyedBroadcastProcessFunction. Its second input is a stream of rules
// ({"rule": name, "min": threshold}), broadcast to every subtask, which
// keeps them in broadcast state (typed.Broadcast: replicated, so a restore
// at any parallelism hands every new subtask a copy). Its first input is an
// event stream keyed by key; each event comes out with the names of the
// rules whose min it reaches ({..., "rules": [...]}).
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
	"github.com/flowrt/flow/pkg/api/typed"
)

// Name is the type name jobs use (type: example-enrich).
const Name = "example-enrich"

// Type is the operator type to register.
func Type() api.OperatorType {
	return typed.MustBroadcastType(typed.BroadcastDefinition[json.RawMessage, Rule, map[string]any]{
		Name: Name,
		Doc: "Enriches a keyed event stream (first input) with the rules of a broadcast rules stream (second input) " +
			"that each event's value reaches; the broadcast state pattern. An example of a user-defined two-input type.",
		Fields: []api.Field{
			{Name: "field", Type: api.TypeString, Default: "value", Doc: "The numeric event field the rules' min applies to."},
		},
		Example:      "- id: enriched\n  type: example-enrich\n  inputs:\n    - {from: events, keyBy: key}\n    - {from: rules, partitioning: broadcast}\n",
		Capabilities: typed.Capabilities{EventTimers: true},
		New: func(cfg api.Config) (typed.KeyedBroadcastProcessFunction[json.RawMessage, Rule, map[string]any], error) {
			return &Enrich{field: cfg.String("field")}, nil
		},
	})
}

// Rule is one element of the rules stream; a rule with the name of an
// earlier one replaces it, and one with "delete": true removes it.
type Rule struct {
	Name   string  `json:"rule"`
	Min    float64 `json:"min"`
	Delete bool    `json:"delete,omitempty"`
}

// Enrich is one subtask's function. Events stay as their JSON (a
// json.RawMessage input) until they are enriched.
type Enrich struct {
	typed.Base[map[string]any]
	field   string
	rules   *typed.BroadcastState[string, float64]
	pending *api.MapState[int64, []json.RawMessage]
}

// Open declares the broadcast rules and the keyed pending events (names and
// codecs as the raw version had them, so its savepoints restore).
func (e *Enrich) Open(ctx api.Context) (err error) {
	if e.rules, err = typed.Broadcast[string, float64](ctx, "rules"); err != nil {
		return err
	}
	e.pending, err = typed.Map[int64, []json.RawMessage](ctx, "pending",
		typed.WithCodec[[]json.RawMessage](&api.JSONCodec[[]json.RawMessage]{Name: "enrich-pending"}))
	return err
}

// ProcessElement holds an event until the watermark reaches its timestamp.
func (e *Enrich) ProcessElement(ctx *typed.Context[map[string]any], ev json.RawMessage) error {
	ts := ctx.Timestamp()
	if ts == api.NoTimestamp {
		return errors.New("event has no timestamp: give the events source a watermarks strategy")
	}
	held, _, err := e.pending.Get(ts)
	if err != nil {
		return err
	}
	if err := e.pending.Put(ts, append(held, ev)); err != nil {
		return err
	}
	return ctx.Timers().RegisterEventTime(ts)
}

// ProcessBroadcastElement applies a rule: every subtask receives every
// rule, so the broadcast state stays the same on all of them.
func (e *Enrich) ProcessBroadcastElement(ctx *typed.BroadcastContext[map[string]any], rule Rule) error {
	switch {
	case rule.Name == "":
		return errors.New(`rule without a name: want {"rule": name, "min": number}`)
	case rule.Delete:
		return e.rules.Remove(ctx, rule.Name)
	}
	return e.rules.Put(ctx, rule.Name, rule.Min)
}

// OnTimer emits the events held for the timer's timestamp, enriched.
func (e *Enrich) OnTimer(ctx *typed.Context[map[string]any], t typed.Timer) error {
	held, _, err := e.pending.Get(t.Timestamp)
	if err != nil {
		return err
	}
	for _, ev := range held {
		var fields map[string]any
		if err := json.Unmarshal(ev, &fields); err != nil {
			return fmt.Errorf("event %s: %w", ev, err)
		}
		v, _ := fields[e.field].(float64)
		names := []string{}
		if err := e.rules.Range(func(name string, min float64) bool {
			if v >= min {
				names = append(names, name)
			}
			return true
		}); err != nil {
			return err
		}
		sort.Strings(names)
		fields["rules"] = names
		if err := ctx.Emit(fields); err != nil {
			return err
		}
	}
	return e.pending.Remove(t.Timestamp)
}
