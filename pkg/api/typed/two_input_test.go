package typed_test

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/typed"
	"github.com/flowrt/flow/pkg/jobbuilder"
)

type order struct {
	Item   string `json:"item"`
	Amount int64  `json:"amount"`
}

type payment struct {
	Paid int64 `json:"paid"`
}

type matched struct {
	Key    string `json:"key"`
	Item   string `json:"item"`
	Paid   int64  `json:"paid"`
	Reason string `json:"reason,omitempty"`
}

// orderPayments holds a key's order until its payment arrives (from
// either side first), and reports an unpaid order when the watermark
// passes its timestamp + 100.
type orderPayments struct {
	typed.Base[matched]
	order *api.ValueState[order]
	paid  *api.ValueState[int64]
}

func (f *orderPayments) Open(ctx api.Context) (err error) {
	if f.order, err = typed.Value[order](ctx, "order"); err != nil {
		return err
	}
	f.paid, err = typed.Value[int64](ctx, "paid")
	return err
}

func (f *orderPayments) ProcessElement1(ctx *typed.Context[matched], o order) error {
	p, ok, err := f.paid.Lookup()
	if err != nil {
		return err
	}
	if ok {
		f.paid.Clear()
		return ctx.Emit(matched{Key: string(ctx.CurrentKey()), Item: o.Item, Paid: p})
	}
	if err := f.order.Update(o); err != nil {
		return err
	}
	return ctx.Timers().RegisterEventTime(ctx.Timestamp() + 100)
}

func (f *orderPayments) ProcessElement2(ctx *typed.Context[matched], p payment) error {
	o, ok, err := f.order.Lookup()
	if err != nil {
		return err
	}
	if ok {
		f.order.Clear()
		return ctx.Emit(matched{Key: string(ctx.CurrentKey()), Item: o.Item, Paid: p.Paid})
	}
	return f.paid.Update(p.Paid)
}

func (f *orderPayments) OnTimer(ctx *typed.Context[matched], _ typed.Timer) error {
	o, ok, err := f.order.Lookup()
	if err != nil || !ok {
		return err
	}
	f.order.Clear()
	return ctx.Emit(matched{Key: string(ctx.CurrentKey()), Item: o.Item, Reason: "unpaid"})
}

func coDef() typed.CoDefinition[order, payment, matched] {
	return typed.CoDefinition[order, payment, matched]{
		Name: "test-orders", Capabilities: typed.Capabilities{EventTimers: true},
		New: func(api.Config) (typed.KeyedCoProcessFunction[order, payment, matched], error) {
			return &orderPayments{}, nil
		},
	}
}

func TestCoProcessFunction(t *testing.T) {
	h := newHarness(t, typed.MustCoType(coDef()), "")
	h.mustProcess("a", `{"item":"book","amount":3}`, 10)
	h.mustProcess2("b", `{"paid":7}`, 11) // b pays before its order
	h.mustProcess2("a", `{"paid":3}`, 12)
	h.mustProcess("b", `{"item":"pen"}`, 13)
	h.mustProcess("c", `{"item":"cup"}`, 14) // never paid
	h.watermark(200)
	var got []string
	for _, r := range h.out {
		got = append(got, fmt.Sprintf("%s %s@%d", r.Key, r.Value, r.Timestamp))
	}
	want := []string{
		`a {"key":"a","item":"book","paid":3}@12`,
		`b {"key":"b","item":"pen","paid":7}@13`,
		`c {"key":"c","item":"cup","paid":0,"reason":"unpaid"}@114`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// a's timer fired too, but its order was matched: nothing more.
	err := h.process2("a", `{"paid":"three"}`, 20)
	if err == nil || !errors.Is(err, api.ErrCodec) || !strings.Contains(err.Error(), `type "test-orders": second input record`) {
		t.Fatalf("bad second input record: err = %v", err)
	}
}

type rule struct {
	Name string `json:"rule"`
	Min  int64  `json:"min"`
}

type tagged struct {
	Value int64    `json:"value"`
	Rules []string `json:"rules"`
}

// tagRules tags each event with the rules its value meets.
type tagRules struct {
	typed.Base[tagged]
	rules *typed.BroadcastState[string, int64]
	count *api.ValueState[int64]
	// stash and misuse: a test hook that writes broadcast state from
	// ProcessElement with a kept BroadcastContext, or keyed state from
	// ProcessBroadcastElement.
	stash  *typed.BroadcastContext[tagged]
	misuse string
	err    error
}

func (f *tagRules) Open(ctx api.Context) (err error) {
	if f.rules, err = typed.Broadcast[string, int64](ctx, "rules"); err != nil {
		return err
	}
	f.count, err = typed.Value[int64](ctx, "count")
	return err
}

func (f *tagRules) ProcessElement(ctx *typed.Context[tagged], ev event) error {
	if f.misuse == "write" {
		f.err = f.rules.Put(f.stash, "x", 1)
	}
	if n, err := f.count.Value(); err != nil {
		return err
	} else if err := f.count.Update(n + 1); err != nil {
		return err
	}
	out := tagged{Value: ev.Value, Rules: []string{}}
	if err := f.rules.Range(func(name string, min int64) bool {
		if ev.Value >= min {
			out.Rules = append(out.Rules, name)
		}
		return true
	}); err != nil {
		return err
	}
	sort.Strings(out.Rules)
	return ctx.Emit(out)
}

func (f *tagRules) ProcessBroadcastElement(ctx *typed.BroadcastContext[tagged], r rule) error {
	f.stash = ctx
	switch f.misuse {
	case "keyed":
		_, err := f.count.Value()
		return err
	}
	if r.Min < 0 {
		return f.rules.Remove(ctx, r.Name)
	}
	return f.rules.Put(ctx, r.Name, r.Min)
}

func broadcastDef(fn *tagRules) typed.BroadcastDefinition[event, rule, tagged] {
	return typed.BroadcastDefinition[event, rule, tagged]{
		Name: "test-tag-rules",
		New: func(api.Config) (typed.KeyedBroadcastProcessFunction[event, rule, tagged], error) {
			if fn != nil {
				return fn, nil
			}
			return &tagRules{}, nil
		},
	}
}

func TestBroadcastProcessFunction(t *testing.T) {
	h := newHarness(t, typed.MustBroadcastType(broadcastDef(nil)), "")
	h.mustProcess2("", `{"rule":"low","min":0}`, api.NoTimestamp)
	h.mustProcess2("", `{"rule":"high","min":10}`, api.NoTimestamp)
	h.mustProcess("a", `{"value":12}`, 1)
	h.mustProcess("b", `{"value":5}`, 2)
	h.mustProcess2("", `{"rule":"high","min":-1}`, api.NoTimestamp) // removed
	h.mustProcess2("", `{"rule":"mid","min":4}`, api.NoTimestamp)
	h.mustProcess("a", `{"value":12}`, 3)
	got := h.values()
	want := []string{`{"value":12,"rules":["high","low"]}`, `{"value":5,"rules":["low"]}`, `{"value":12,"rules":["low","mid"]}`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// The broadcast state is operator state of broadcast mode (replicated
	// on restore), with the default state codecs.
	snap := h.ops.Snapshot()
	if len(snap) != 1 || snap[0].Spec.Name != "rules" || snap[0].Spec.Mode != api.Broadcast ||
		snap[0].Spec.KeyCodec != "string" || snap[0].Spec.ValueCodec != "int64" {
		t.Fatalf("operator state %+v: want broadcast map \"rules\" string/int64", snap)
	}
}

func TestBroadcastStateMisuseFails(t *testing.T) {
	// Writing broadcast state outside ProcessBroadcastElement (with a kept
	// context) fails; ProcessElement has no BroadcastContext to pass, so
	// only a kept one compiles.
	fn := &tagRules{}
	h := newHarness(t, typed.MustBroadcastType(broadcastDef(fn)), "")
	h.mustProcess2("", `{"rule":"low","min":0}`, api.NoTimestamp)
	fn.misuse = "write"
	h.mustProcess("a", `{"value":1}`, 1)
	if !errors.Is(fn.err, typed.ErrReadOnly) || !strings.Contains(fn.err.Error(), "in ProcessBroadcastElement only") {
		t.Errorf("write from ProcessElement: err = %v", fn.err)
	}
	// Broadcast records have no key: keyed state fails.
	fn.misuse = "keyed"
	if err := h.process2("", `{"rule":"x"}`, 1); err == nil {
		t.Error("keyed state read in ProcessBroadcastElement succeeded")
	}
	// A broadcast record that does not decode names the broadcast input.
	fn.misuse = ""
	if err := h.process2("", `{"rule":5}`, 1); err == nil || !strings.Contains(err.Error(), "broadcast record") {
		t.Errorf("bad broadcast record: err = %v", err)
	}
}

func TestTwoInputCapabilities(t *testing.T) {
	reg := api.Default.Clone()
	reg.MustRegister(typed.MustCoType(coDef()))
	reg.MustRegister(typed.MustBroadcastType(broadcastDef(nil)))
	build := func(typ string, watermarks bool, second func(*jobbuilder.Op)) error {
		j := jobbuilder.New("two")
		a := j.Source("a", "datagen").Config(jobbuilder.Config{"count": 10})
		b := j.Source("b", "datagen").Config(jobbuilder.Config{"count": 10})
		if watermarks {
			a.Watermarks(jobbuilder.Watermarks{Timestamp: "ts"})
			b.Watermarks(jobbuilder.Watermarks{Timestamp: "ts"})
		}
		op := j.Operator("op", typ, a, b).InputKeyBy(0, "key")
		second(op)
		j.Sink("out", "print", op)
		_, err := j.Build(reg)
		return err
	}
	keyed := func(o *jobbuilder.Op) { o.InputKeyBy(1, "key") }
	bcast := func(o *jobbuilder.Op) { o.InputPartitioning(1, jobbuilder.Broadcast) }
	for _, c := range []struct {
		name, typ  string
		watermarks bool
		second     func(*jobbuilder.Op)
		want       string
	}{
		{"co with watermarks", "test-orders", true, keyed, ""},
		{"co event timers without watermarks", "test-orders", false, keyed, `type "test-orders" uses event-time timers, but source "a", "b" upstream assigns no watermarks`},
		{"broadcast", "test-tag-rules", false, bcast, ""},
		{"broadcast input keyed", "test-tag-rules", false, keyed, `type "test-tag-rules" is a broadcast function, but its second input "b" is partitioned hash: give it partitioning: broadcast`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := build(c.typ, c.watermarks, c.second)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want == "":
			case err == nil:
				t.Fatalf("built; want refused with %q", c.want)
			case !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n"):
				t.Fatalf("error %q: want one line containing %q", err, c.want)
			}
		})
	}
}
