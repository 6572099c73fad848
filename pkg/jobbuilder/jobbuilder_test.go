package jobbuilder_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/jobbuilder"
	"github.com/flowrt/flow/pkg/jobspec"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// spec is the YAML twin of build(): every knob the builder has.
const spec = `name: twin
parallelism: 2
maxParallelism: 64
stateBackend: {type: pebble}
checkpoints:
  interval: 2s
  mode: exactly_once
  minPause: 500ms
restart:
  strategy: fixed_delay
  attempts: 5
  delay: 250ms
operators:
  - id: clicks
    type: datagen
    parallelism: 3
    config: {count: 5000, keys: 50, rate: 1000}
    watermarks:
      timestamp: ts
      outOfOrderness: 2s
      idleTimeout: 1m
  - id: views
    type: datagen
    config: {count: 10}
  - id: big
    type: filter
    inputs: [clicks, views]
    onError: skip
    config: {condition: "value > 3"}
  - id: per-key
    type: count
    uid: per-key-v2
    inputs: [big]
    keyBy: key
    parallelism: 4
  - id: unique
    type: dedupe
    inputs: [per-key]
    keyBy: key
    config: {ttl: 10m}
  - id: everywhere
    type: filter
    inputs: [unique]
    partitioning: broadcast
    config: {condition: "true"}
  - id: out
    type: blackhole
    inputs: [everywhere]
    partitioning: rebalance
`

func build() *jobbuilder.Job {
	j := jobbuilder.New("twin").Parallelism(2).MaxParallelism(64).
		StateBackend(jobbuilder.Config{"type": "pebble"}).
		Checkpoints(jobbuilder.Config{"interval": 2 * time.Second, "mode": "exactly_once", "minPause": "500ms"}).
		Restart(jobbuilder.Config{"strategy": "fixed_delay", "attempts": 5, "delay": 250 * time.Millisecond})
	clicks := j.Source("clicks", "datagen").Parallelism(3).
		Config(jobbuilder.Config{"count": 5000, "keys": 50, "rate": 1000}).
		Watermarks(jobbuilder.Watermarks{Timestamp: "ts", OutOfOrderness: 2 * time.Second, IdleTimeout: time.Minute})
	views := j.Source("views", "datagen").Config(jobbuilder.Config{"count": 10})
	big := j.Operator("big", "filter", clicks, views).OnError("skip").Config(jobbuilder.Config{"condition": "value > 3"})
	perKey := j.Operator("per-key", "count", big).UID("per-key-v2").KeyBy("key").Parallelism(4)
	unique := j.Operator("unique", "dedupe", perKey).KeyBy("key").Config(jobbuilder.Config{"ttl": 10 * time.Minute})
	everywhere := j.Operator("everywhere", "filter", unique).Partitioning(jobbuilder.Broadcast).Config(jobbuilder.Config{"condition": "true"})
	j.Sink("out", "blackhole", everywhere).Partitioning(jobbuilder.Rebalance)
	return j
}

// TestBuilderEqualsSpec: a builder-made graph is the spec-made graph of
// the same job, field for field (but the Spec text, which is each one's
// source).
func TestBuilderEqualsSpec(t *testing.T) {
	want, err := jobspec.Parse([]byte(spec), "twin.yaml", api.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := build().Build(api.Default)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSpec() == "" {
		t.Error("the built graph has no Spec text")
	}
	// The rendered spec parses to the same graph on its own.
	again, err := jobspec.Parse([]byte(got.GetSpec()), "rendered.yaml", api.Default, nil)
	if err != nil || !proto.Equal(again, got) {
		t.Errorf("the graph's Spec does not parse back to it: %v", err)
	}
	want.Spec, got.Spec = "", ""
	if !proto.Equal(want, got) {
		t.Fatalf("builder graph differs from the spec's:\nbuilder: %v\nspec:    %v", got, want)
	}
	if len(got.GetVertices()) != 7 || len(got.GetEdges()) != 6 {
		t.Fatalf("got %d vertices, %d edges", len(got.GetVertices()), len(got.GetEdges()))
	}
	// Spot checks that the twin really exercises the knobs.
	byID := map[string]*jobgraphv1.Vertex{}
	for _, v := range got.GetVertices() {
		byID[v.GetId()] = v
	}
	if v := byID["per-key"]; v.GetUid() != "per-key-v2" || v.GetKeyBy() != "key" || v.GetParallelism() != 4 {
		t.Errorf("per-key vertex %v", v)
	}
	if w := byID["clicks"].GetWatermarks(); w.GetOutOfOrdernessMs() != 2000 || w.GetIdleTimeoutMs() != 60000 {
		t.Errorf("clicks watermarks %v", w)
	}
}

// TestBuilderErrors: every problem at once, naming the job and operator,
// without positions in the rendered YAML.
func TestBuilderErrors(t *testing.T) {
	j := jobbuilder.New("broken")
	gen := j.Source("gen", "datagen").Config(jobbuilder.Config{"count": "many"})
	j.Operator("cnt", "count", gen) // keyed: needs KeyBy
	j.Sink("out", "nosuchsink", gen)
	_, err := j.Build(api.Default)
	if !errors.Is(err, jobspec.ErrInvalidSpec) {
		t.Fatalf("err = %v, want an invalid spec", err)
	}
	lines := strings.Split(err.Error(), "\n")
	for _, want := range []string{
		`job "broken": operator "gen": config field "count": wrong type`,
		`job "broken": operator "cnt": type "count" is keyed and needs keyBy`,
		`job "broken": operator "out": unknown type "nosuchsink"`,
	} {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, want)
		}
		if !found {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if len(lines) != 3 {
		t.Errorf("%d problems, want 3:\n%v", len(lines), err)
	}

	other := jobbuilder.New("other").Source("x", "datagen")
	j2 := jobbuilder.New("j2")
	j2.Sink("out", "blackhole", other)
	if _, err := j2.Build(api.Default); err == nil || !strings.Contains(err.Error(), `input "x" belongs to another job`) {
		t.Errorf("foreign input: %v", err)
	}
}

// TestBuilderTwoInputs: per-input keyBy and partitioning build the graph
// the equivalent spec does.
func TestBuilderTwoInputs(t *testing.T) {
	want, err := jobspec.Parse([]byte(`name: joins
operators:
  - {id: clicks, type: datagen}
  - {id: views, type: datagen}
  - id: j
    type: interval-join
    inputs: [{from: clicks, keyBy: key}, {from: views, keyBy: 'value % 10'}]
    config: {lower: -1s, upper: 1s}
  - id: b
    type: join
    inputs: [{from: clicks, keyBy: key}, {from: views, partitioning: broadcast}]
  - {id: out, type: print, inputs: [j, b]}
`), "joins.yaml", api.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	jb := jobbuilder.New("joins")
	clicks, views := jb.Source("clicks", "datagen"), jb.Source("views", "datagen")
	j := jb.Operator("j", "interval-join", clicks, views).InputKeyBy(0, "key").InputKeyBy(1, "value % 10").
		Config(jobbuilder.Config{"lower": -time.Second, "upper": time.Second})
	b := jb.Operator("b", "join", clicks, views).InputKeyBy(0, "key").InputPartitioning(1, jobbuilder.Broadcast)
	jb.Sink("out", "print", j, b)
	got, err := jb.Build(api.Default)
	if err != nil {
		t.Fatal(err)
	}
	want.Spec, got.Spec = "", ""
	if !proto.Equal(want, got) {
		t.Fatalf("builder graph differs from the spec's:\nbuilder: %v\nspec:    %v", got, want)
	}
	bad := jobbuilder.New("x")
	bad.Operator("j", "join").InputKeyBy(2, "key")
	if _, err := bad.Build(api.Default); err == nil || !strings.Contains(err.Error(), "InputKeyBy(2, ...): it has 0 inputs") {
		t.Errorf("InputKeyBy out of range: %v", err)
	}
}

// TestBuilderSideOutputs: Op.SideOutput builds the graph of the spec's
// `inputs: [win.late]`, with the side output on the edge; a side output the
// type does not declare, or settings on a side output, are refused.
func TestBuilderSideOutputs(t *testing.T) {
	want, err := jobspec.Parse([]byte(`name: late
operators:
  - {id: gen, type: datagen, watermarks: {timestamp: ts}}
  - {id: win, type: window, uid: win-v1, inputs: [gen], keyBy: key, config: {size: 1s}}
  - {id: windows, type: print, inputs: [win]}
  - {id: late, type: print, inputs: [win.late]}
  - {id: lateKeyed, type: count, inputs: [{from: win.late, keyBy: key}]}
  - {id: out, type: blackhole, inputs: [lateKeyed]}
`), "late.yaml", api.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := jobbuilder.New("late")
	gen := j.Source("gen", "datagen").Watermarks(jobbuilder.Watermarks{Timestamp: "ts"})
	win := j.Operator("win", "window", gen).UID("win-v1").KeyBy("key").Config(jobbuilder.Config{"size": time.Second})
	j.Sink("windows", "print", win)
	j.Sink("late", "print", win.SideOutput("late"))
	lateKeyed := j.Operator("lateKeyed", "count", win.SideOutput("late")).InputKeyBy(0, "key")
	j.Sink("out", "blackhole", lateKeyed)
	got, err := j.Build(api.Default)
	if err != nil {
		t.Fatal(err)
	}
	want.Spec, got.Spec = "", ""
	if !proto.Equal(want, got) {
		t.Fatalf("builder graph differs from the spec's:\nbuilder: %v\nspec:    %v", got, want)
	}
	sides := 0
	for _, e := range got.GetEdges() {
		if e.GetSideOutput() == "late" {
			sides++
		}
	}
	if sides != 2 {
		t.Errorf("%d edges of side output late, want 2", sides)
	}

	for sink, want := range map[string]string{
		"lat":      `job "bad": operator "a": input "win.lat": operator "win" (type "window") has no side output "lat" (did you mean "late"?) (side outputs: late)`,
		"settings": `job "bad": operator "a": side output "late" of "win" has settings: it is a stream to read, set them on "win" itself`,
	} {
		bad := jobbuilder.New("bad")
		g := bad.Source("gen", "datagen").Watermarks(jobbuilder.Watermarks{Timestamp: "ts"})
		w := bad.Operator("win", "window", g).KeyBy("key").Config(jobbuilder.Config{"size": time.Second})
		if sink == "lat" {
			bad.Sink("a", "print", w.SideOutput("lat"))
		} else {
			bad.Sink("a", "print", w.SideOutput("late").UID("x"))
		}
		if _, err := bad.Build(api.Default); err == nil || err.Error() != want {
			t.Errorf("err = %v, want the one line %q", err, want)
		}
	}
}
