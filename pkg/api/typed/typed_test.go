package typed_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/typed"
)

type event struct {
	Kind  string `json:"kind"`
	Value int64  `json:"value"`
}

type summary struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
	Times []int64
	Kinds int64 `json:"kinds"` // records of this kind so far
	Max   event `json:"max"`
}

// stateful uses all three typed state kinds.
type stateful struct {
	typed.Base[summary]
	count *api.ValueState[int64]
	times *api.ListState[int64]
	kinds *api.MapState[string, int64]
	max   *api.ValueState[event]
}

func (f *stateful) Open(ctx api.Context) (err error) {
	if f.count, err = typed.Value[int64](ctx, "count"); err != nil {
		return err
	}
	if f.times, err = typed.List[int64](ctx, "times"); err != nil {
		return err
	}
	if f.kinds, err = typed.Map[string, int64](ctx, "kinds"); err != nil {
		return err
	}
	f.max, err = typed.Value[event](ctx, "max", typed.WithDefault(event{Kind: "none", Value: -1}))
	return err
}

func (f *stateful) ProcessElement(ctx *typed.Context[summary], in event) error {
	n, err := f.count.Value()
	if err != nil {
		return err
	}
	if err := f.count.Update(n + 1); err != nil {
		return err
	}
	if err := f.times.Add(ctx.Timestamp()); err != nil {
		return err
	}
	k, _, err := f.kinds.Get(in.Kind)
	if err != nil {
		return err
	}
	if err := f.kinds.Put(in.Kind, k+1); err != nil {
		return err
	}
	m, err := f.max.Value()
	if err != nil {
		return err
	}
	if in.Value > m.Value {
		m = in
		if err := f.max.Update(m); err != nil {
			return err
		}
	}
	times, err := f.times.Get()
	if err != nil {
		return err
	}
	return ctx.Emit(summary{Key: string(ctx.CurrentKey()), Count: n + 1, Times: times, Kinds: k + 1, Max: m})
}

func statefulType(t testing.TB) api.OperatorType {
	typ, err := typed.Type(typed.Definition[event, summary]{
		Name: "test-stateful",
		New:  func(api.Config) (typed.KeyedProcessFunction[event, summary], error) { return &stateful{}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return typ
}

func TestStateRoundTrip(t *testing.T) {
	h := newHarness(t, statefulType(t), "")
	h.mustProcess("a", `{"kind":"x","value":5}`, 10)
	h.mustProcess("b", `{"kind":"x","value":1}`, 11)
	h.mustProcess("a", `{"kind":"y","value":3}`, 12)
	h.mustProcess("a", `{"kind":"x","value":9}`, 13)
	got := h.values()
	want := []string{
		`{"key":"a","count":1,"Times":[10],"kinds":1,"max":{"kind":"x","value":5}}`,
		`{"key":"b","count":1,"Times":[11],"kinds":1,"max":{"kind":"x","value":1}}`,
		`{"key":"a","count":2,"Times":[10,12],"kinds":1,"max":{"kind":"x","value":5}}`,
		`{"key":"a","count":3,"Times":[10,12,13],"kinds":2,"max":{"kind":"x","value":9}}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The default codecs are the api's order-preserving ones for scalars and
	// versioned JSON for structs (what savepoints record).
	ids := map[string]string{}
	for _, s := range h.eng.States() {
		ids[s.Name] = s.KeyCodec + "/" + s.ValueCodec
	}
	wantIDs := map[string]string{"count": "/int64", "times": "/int64", "kinds": "string/int64", "max": "/json:typed_test.event"}
	for n, id := range wantIDs {
		if ids[n] != id {
			t.Errorf("state %q codecs %q, want %q", n, ids[n], id)
		}
	}
}

type ttlFn struct {
	typed.Base[int64]
	seen *api.ValueState[int64]
}

func (f *ttlFn) Open(ctx api.Context) (err error) {
	f.seen, err = typed.Value[int64](ctx, "seen", typed.TTL(time.Minute))
	return err
}

func (f *ttlFn) ProcessElement(ctx *typed.Context[int64], _ event) error {
	n, err := f.seen.Value()
	if err != nil {
		return err
	}
	if err := f.seen.Update(n + 1); err != nil {
		return err
	}
	return ctx.Emit(n + 1)
}

func TestTTL(t *testing.T) {
	h := newHarness(t, typed.MustType(typed.Definition[event, int64]{
		Name: "test-ttl", New: func(api.Config) (typed.KeyedProcessFunction[event, int64], error) { return &ttlFn{}, nil },
	}), "")
	h.mustProcess("a", `{}`, 0)
	h.clock.add(30 * time.Second)
	h.mustProcess("a", `{}`, 0) // written 30s ago: alive
	h.clock.add(61 * time.Second)
	h.mustProcess("a", `{}`, 0) // written 61s ago: expired
	if got, want := h.values(), []string{"1", "2", "1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %v, want %v (TTL of one minute)", got, want)
	}
	if specs := h.eng.States(); len(specs) != 1 || specs[0].TTL == nil || specs[0].TTL.TTL != time.Minute {
		t.Fatalf("state specs %+v: want a one-minute TTL", specs)
	}
}

type fired struct {
	Key    string `json:"key"`
	Domain string `json:"domain"`
	TS     int64  `json:"ts"`
	CtxTS  int64  `json:"ctxTs"`
}

// timerFn registers an event-time timer 10ms after each record and a
// processing-time timer at the record's value.
type timerFn struct{ typed.Base[fired] }

func (timerFn) ProcessElement(ctx *typed.Context[fired], in event) error {
	if err := ctx.Timers().RegisterEventTime(ctx.Timestamp() + 10); err != nil {
		return err
	}
	return ctx.Timers().RegisterProcessingTime(in.Value)
}

func (timerFn) OnTimer(ctx *typed.Context[fired], t typed.Timer) error {
	return ctx.Emit(fired{Key: string(ctx.CurrentKey()), Domain: t.Domain.String(), TS: t.Timestamp, CtxTS: ctx.Timestamp()})
}

func timerDef(caps typed.Capabilities) typed.Definition[event, fired] {
	return typed.Definition[event, fired]{
		Name: "test-timers", Capabilities: caps,
		New: func(api.Config) (typed.KeyedProcessFunction[event, fired], error) { return timerFn{}, nil },
	}
}

func TestTimersFireWithKeyAndTimestamp(t *testing.T) {
	h := newHarness(t, typed.MustType(timerDef(typed.Capabilities{EventTimers: true, ProcessingTimers: true})), "")
	h.mustProcess("a", `{"value":5000000}`, 100)
	h.mustProcess("b", `{"value":4000000}`, 50)
	h.watermark(59)
	h.watermark(200)
	h.processingTime(4500000)
	var got []string
	for _, r := range h.out {
		got = append(got, fmt.Sprintf("%s@%d", r.Value, r.Timestamp))
	}
	want := []string{
		`{"key":"b","domain":"event-time","ts":60,"ctxTs":60}@60`,
		`{"key":"a","domain":"event-time","ts":110,"ctxTs":110}@110`,
		fmt.Sprintf(`{"key":"b","domain":"processing-time","ts":4000000,"ctxTs":4000000}@%d`, api.NoTimestamp),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fired\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestUndeclaredTimerDomainFails(t *testing.T) {
	h := newHarness(t, typed.MustType(timerDef(typed.Capabilities{EventTimers: true})), "")
	err := h.process("a", `{"value":1}`, 1)
	if !errors.Is(err, typed.ErrCapability) || !strings.Contains(err.Error(), "set Capabilities.ProcessingTimers") {
		t.Fatalf("err = %v, want the undeclared processing-time capability named", err)
	}
}

// splitter sends even values to the main output and odd ones, as strings,
// to side output "odd".
type splitter struct{ typed.Base[event] }

var odd = typed.NewOutputTag[string]("odd", nil)

func (splitter) ProcessElement(ctx *typed.Context[event], in event) error {
	if in.Value%2 == 0 {
		return ctx.Emit(in)
	}
	return odd.Emit(ctx, fmt.Sprint("odd ", in.Value))
}

func splitterDef(sides ...string) typed.Definition[event, event] {
	return typed.Definition[event, event]{
		Name: "test-split", Capabilities: typed.Capabilities{SideOutputs: sides},
		New: func(api.Config) (typed.KeyedProcessFunction[event, event], error) { return splitter{}, nil },
	}
}

func TestSideOutputs(t *testing.T) {
	typ := typed.MustType(splitterDef("odd"))
	if !reflect.DeepEqual(typ.SideOutputs, []string{"odd"}) {
		t.Fatalf("type's side outputs %q, want [odd]", typ.SideOutputs)
	}
	h := newHarness(t, typ, "")
	for i := range 4 {
		h.mustProcess("k", fmt.Sprintf(`{"kind":"n","value":%d}`, i), int64(i))
	}
	show := func(recs []api.Record) []string {
		var vs []string
		for _, r := range recs {
			// Values 0..3 came with timestamps 0..3 under key "k".
			vs = append(vs, fmt.Sprintf("%s %s@%d", r.Key, r.Value, r.Timestamp))
		}
		return vs
	}
	if got, want := show(h.out), []string{`k {"kind":"n","value":0}@0`, `k {"kind":"n","value":2}@2`}; !reflect.DeepEqual(got, want) {
		t.Errorf("main output %q, want %q", got, want)
	}
	if got, want := show(h.side["odd"]), []string{`k "odd 1"@1`, `k "odd 3"@3`}; !reflect.DeepEqual(got, want) {
		t.Errorf("odd output %q, want %q", got, want)
	}
	// A side output the type does not declare.
	h = newHarness(t, typed.MustType(splitterDef("even")), "")
	if err := h.process("k", `{"value":1}`, 1); !errors.Is(err, typed.ErrCapability) || !strings.Contains(err.Error(), `side output "odd", which it does not declare`) {
		t.Errorf("undeclared side output: err = %v", err)
	}
}

func TestCodecErrorIsRecordError(t *testing.T) {
	h := newHarness(t, statefulType(t), "")
	err := h.process("a", `{"kind":"x","value":"five"}`, 1)
	if err == nil {
		t.Fatal("a value of the wrong type decoded")
	}
	msg := err.Error()
	for _, want := range []string{`type "test-stateful"`, `input record "{\"kind\":\"x\",\"value\":\"five\"}"`, "record-json:typed_test.event", "onError: skip"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if !errors.Is(err, api.ErrCodec) || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want one line wrapping api.ErrCodec", msg)
	}
	if len(h.out) != 0 {
		t.Errorf("emitted %d records for a bad record", len(h.out))
	}
	h.mustProcess("a", `{"kind":"x","value":5}`, 2) // the operator goes on
}

func TestCustomCodecs(t *testing.T) {
	typ := typed.MustType(typed.Definition[[]byte, string]{
		Name: "test-raw", In: typed.Bytes(), Out: typed.String(),
		New: func(api.Config) (typed.KeyedProcessFunction[[]byte, string], error) { return upper{}, nil },
	})
	h := newHarness(t, typ, "")
	h.mustProcess("k", "not json", 1)
	if got := h.values(); !reflect.DeepEqual(got, []string{"NOT JSON!"}) {
		t.Fatalf("got %q", got)
	}
}

type upper struct{ typed.Base[string] }

func (upper) ProcessElement(ctx *typed.Context[string], in []byte) error {
	return ctx.Emit(strings.ToUpper(string(in)) + "!")
}
