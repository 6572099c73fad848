package typed_test

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/typed"
	"github.com/flowrt/flow/pkg/jobbuilder"
)

// Click is an input record, decoded from the record's JSON.
type Click struct {
	User string `json:"user"`
	Page string `json:"page"`
}

// Visits is an output record, encoded as JSON.
type Visits struct {
	User   string `json:"user"`
	Visits int64  `json:"visits"`
}

// CountVisits counts each user's clicks and emits the count when the user
// has been quiet for a minute of event time.
type CountVisits struct {
	typed.Base[Visits] // no-op Open, Finish, Close
	count              *api.ValueState[int64]
	last               *api.ValueState[int64]
}

func (f *CountVisits) Open(ctx api.Context) (err error) {
	if f.count, err = typed.Value[int64](ctx, "count", typed.TTL(24*time.Hour)); err != nil {
		return err
	}
	f.last, err = typed.Value[int64](ctx, "last-timer")
	return err
}

func (f *CountVisits) ProcessElement(ctx *typed.Context[Visits], c Click) error {
	n, err := f.count.Value()
	if err != nil {
		return err
	}
	if err := f.count.Update(n + 1); err != nil {
		return err
	}
	// Move the user's timer to a minute after this click.
	if prev, ok, err := f.last.Lookup(); err != nil {
		return err
	} else if ok {
		if err := ctx.Timers().DeleteEventTime(prev); err != nil {
			return err
		}
	}
	at := ctx.Timestamp() + time.Minute.Milliseconds()
	if err := f.last.Update(at); err != nil {
		return err
	}
	return ctx.Timers().RegisterEventTime(at)
}

func (f *CountVisits) OnTimer(ctx *typed.Context[Visits], t typed.Timer) error {
	n, err := f.count.Value()
	if err != nil {
		return err
	}
	if err := f.count.Clear(); err != nil {
		return err
	}
	return ctx.Emit(Visits{User: string(ctx.CurrentKey()), Visits: n})
}

func visitsType() typed.Definition[Click, Visits] {
	return typed.Definition[Click, Visits]{
		Name:         "visits",
		Doc:          "Counts a user's clicks until a minute of quiet.",
		Capabilities: typed.Capabilities{EventTimers: true},
		New: func(api.Config) (typed.KeyedProcessFunction[Click, Visits], error) {
			return &CountVisits{}, nil
		},
	}
}

// A typed function is registered like any operator type and used in jobs
// by name.
func Example() {
	reg := api.Default.Clone()
	if err := typed.Register(reg, visitsType()); err != nil {
		panic(err)
	}
	j := jobbuilder.New("visits")
	clicks := j.Source("clicks", "datagen").Config(jobbuilder.Config{"count": 1000}).
		Watermarks(jobbuilder.Watermarks{Timestamp: "ts", OutOfOrderness: time.Second})
	visits := j.Operator("visits", "visits", clicks).KeyBy("key").UID("visits-v1")
	j.Sink("out", "print", visits)
	_, err := j.Build(reg)
	fmt.Println("built:", err == nil)
	// Output: built: true
}

// Capabilities are checked when the job is built: the same job without
// watermarks on its source is refused, since the function's event-time
// timers would never fire.
func ExampleCapabilities() {
	reg := api.Default.Clone()
	if err := typed.Register(reg, visitsType()); err != nil {
		panic(err)
	}
	j := jobbuilder.New("visits")
	clicks := j.Source("clicks", "datagen").Config(jobbuilder.Config{"count": 1000})
	j.Sink("out", "print", j.Operator("visits", "visits", clicks).KeyBy("key"))
	_, err := j.Build(reg)
	fmt.Println(err)
	// Output: job "visits": operator "visits": capability: type "visits" uses event-time timers, but source "clicks" upstream assigns no watermarks: give it watermarks: {timestamp: ..., outOfOrderness: ...}
}

// Late is a side output of the clicks the watermark has passed.
var Late = typed.NewOutputTag[Click]("late", nil)

// DropLate passes clicks on time and sends the late ones to side output
// "late".
type DropLate struct{ typed.Base[Click] }

func (DropLate) ProcessElement(ctx *typed.Context[Click], c Click) error {
	if ctx.Timestamp() <= ctx.Timers().CurrentWatermark() {
		return Late.Emit(ctx, c)
	}
	return ctx.Emit(c)
}

// A side output is an input of its own: `inputs: [split.late]` reads only
// the late clicks, `inputs: [split]` only the others.
func ExampleOutputTag() {
	reg := api.Default.Clone()
	if err := typed.Register(reg, typed.Definition[Click, Click]{
		Name: "drop-late", Capabilities: typed.Capabilities{EventTime: true, SideOutputs: []string{Late.Name()}},
		New: func(api.Config) (typed.KeyedProcessFunction[Click, Click], error) { return DropLate{}, nil },
	}); err != nil {
		panic(err)
	}
	spec := `name: late-clicks
operators:
  - {id: clicks, type: datagen, watermarks: {timestamp: ts}}
  - {id: split, type: drop-late, inputs: [clicks], keyBy: key}
  - {id: out, type: print, inputs: [split]}
  - {id: lateOut, type: print, inputs: [split.late]}
`
	_, err := parse(spec, reg)
	fmt.Println("valid:", err == nil)
	_, err = parse(strings.Replace(spec, "[split.late]", "[split.lat]", 1), reg)
	fmt.Println(err)
	// Output:
	// valid: true
	// job.yaml:6:41: operator "lateOut": input "split.lat": operator "split" (type "drop-late") has no side output "lat" (did you mean "late"?) (side outputs: late)
}

// countdown is a split: the values still to emit.
type countdown struct{ Left int }

// countdownSource emits each split's values, counting down.
type countdownSource struct {
	typed.SourceBase
	splits []countdown
}

func (s *countdownSource) Open(ctx api.Context) error {
	s.splits = []countdown{{Left: 3}} // one split per subtask
	return nil
}

func (s *countdownSource) Next(out *typed.SourceContext[int]) (api.SourceStatus, error) {
	if len(s.splits) == 0 || s.splits[0].Left == 0 {
		return api.SourceStatus{End: true}, nil
	}
	s.splits[0].Left--
	return api.SourceStatus{}, out.Emit(s.splits[0].Left)
}

func (s *countdownSource) Splits() ([]countdown, error) { return slices.Clone(s.splits), nil }

func (s *countdownSource) RestoreSplits(splits []countdown) error {
	s.splits = splits
	return nil
}

// A typed source reads splits whose progress it keeps in the split value;
// checkpoints store the splits, so a job resumes each one where it was,
// at any parallelism.
func ExampleSourceType() {
	reg := api.Default.Clone()
	err := typed.RegisterSource(reg, typed.SourceDefinition[int, countdown]{
		Name: "countdown",
		New: func(api.Config) (typed.SourceFunction[int, countdown], error) {
			return &countdownSource{}, nil
		},
	})
	fmt.Println("registered:", err == nil)
	j := jobbuilder.New("countdown")
	j.Sink("out", "print", j.Source("numbers", "countdown"))
	_, err = j.Build(reg)
	fmt.Println("built:", err == nil)
	// Output:
	// registered: true
	// built: true
}
