package typed_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/typed"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/jobbuilder"
	"github.com/flowrt/flow/pkg/jobspec"
)

// onlyTimer has OnTimer but its definition may not declare timers.
type onlyTimer struct{ typed.Base[event] }

func (onlyTimer) ProcessElement(*typed.Context[event], event) error { return nil }
func (onlyTimer) OnTimer(*typed.Context[event], typed.Timer) error  { return nil }

// noTimer has no OnTimer.
type noTimer struct{ typed.Base[event] }

func (noTimer) ProcessElement(*typed.Context[event], event) error { return nil }

func testRegistry(t *testing.T) *api.Registry {
	reg := api.Default.Clone()
	for _, d := range []typed.Definition[event, event]{
		{Name: "undeclared-timer", New: func(api.Config) (typed.KeyedProcessFunction[event, event], error) { return onlyTimer{}, nil }},
		{Name: "missing-ontimer", Capabilities: typed.Capabilities{ProcessingTimers: true},
			New: func(api.Config) (typed.KeyedProcessFunction[event, event], error) { return noTimer{}, nil }},
		{Name: "event-timer", Capabilities: typed.Capabilities{EventTimers: true},
			New: func(api.Config) (typed.KeyedProcessFunction[event, event], error) { return onlyTimer{}, nil }},
		splitterDef("odd"),
	} {
		if err := typed.Register(reg, d); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// job is src -> op(typ) -> out, with watermarks on src or not; the print
// sink reads op's side output when output is set.
func job(typ string, watermarks bool, output string) *jobbuilder.Job {
	j := jobbuilder.New("caps")
	src := j.Source("src", "datagen").Config(jobbuilder.Config{"count": 10})
	if watermarks {
		src.Watermarks(jobbuilder.Watermarks{Timestamp: "ts"})
	}
	op := j.Operator("op", typ, src).KeyBy("key")
	if output != "" {
		op = op.SideOutput(output)
	}
	j.Sink("out", "print", op)
	return j
}

func TestCapabilitiesCheckedWhenTheJobIsBuilt(t *testing.T) {
	reg := testRegistry(t)
	for _, c := range []struct {
		name, typ  string
		watermarks bool
		output     string
		want       string // "" for a job that builds
	}{
		{"OnTimer without timers", "undeclared-timer", true, "", `has OnTimer but the type declares no timers: set Capabilities.EventTimers or ProcessingTimers`},
		{"timers without OnTimer", "missing-ontimer", true, "", `declares timers but typed_test.noTimer has no OnTimer`},
		{"event timers without watermarks", "event-timer", false, "", `type "event-timer" uses event-time timers, but source "src" upstream assigns no watermarks: give it watermarks`},
		{"event timers with watermarks", "event-timer", true, "", ""},
		{"main output read", "test-split", false, "", ""},
		{"side output read", "test-split", false, "odd", ""},
		{"undeclared side output read", "test-split", false, "even", `operator "out": input "op.even": operator "op" (type "test-split") has no side output "even" (side outputs: odd)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := job(c.typ, c.watermarks, c.output).Build(reg)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want == "":
			case err == nil:
				t.Fatalf("built; want refused with %q", c.want)
			case !strings.Contains(err.Error(), c.want) || strings.Count(err.Error(), "\n") > 0:
				t.Fatalf("error %q: want one line containing %q", err, c.want)
			}
		})
	}
}

// With two sources, event time needs watermarks on both: the operator's
// watermark is the minimum of its inputs'.
func TestEventTimersNeedEverySourceWatermarked(t *testing.T) {
	reg := testRegistry(t)
	build := func(second bool) error {
		j := jobbuilder.New("two")
		a := j.Source("a", "datagen").Watermarks(jobbuilder.Watermarks{Timestamp: "ts"})
		b := j.Source("b", "datagen")
		if second {
			b.Watermarks(jobbuilder.Watermarks{Timestamp: "ts"})
		}
		mid := j.Operator("mid", "filter", a, b).Config(jobbuilder.Config{"condition": "true"})
		j.Sink("out", "print", j.Operator("op", "event-timer", mid).KeyBy("key"))
		_, err := j.Build(reg)
		return err
	}
	if err := build(false); err == nil || !strings.Contains(err.Error(), `source "b" upstream assigns no watermarks`) {
		t.Errorf("one source without watermarks: err = %v", err)
	}
	if err := build(true); err != nil {
		t.Errorf("both sources with watermarks: %v", err)
	}
}

func TestDefinitionErrors(t *testing.T) {
	if _, err := typed.Type(typed.Definition[event, event]{Name: "x"}); err == nil || !strings.Contains(err.Error(), "New is nil") {
		t.Errorf("nil New: err = %v", err)
	}
	if _, err := typed.Type(splitterDef("a.b")); err == nil || !strings.Contains(err.Error(), `side output "a.b"`) {
		t.Errorf("side output a.b: err = %v", err)
	}
	_, err := typed.Value[int64](&noKeyCtx{}, "v")
	if !errors.Is(err, api.ErrNoKeyedState) {
		t.Errorf("state without keyed context: err = %v", err)
	}
}

type noKeyCtx struct{ testCtx }

func (*noKeyCtx) KeyedStateStore() api.KeyedStateStore { return nil }

func parse(spec string, reg *api.Registry) (any, error) {
	return jobspec.Parse([]byte(spec), "job.yaml", reg, nil)
}
