package runtime

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/operators/dedupe"
	"github.com/flowrt/flow/pkg/operators/reduce"
	"github.com/flowrt/flow/pkg/operators/session"
	"github.com/flowrt/flow/pkg/operators/window"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Tests of the built-in stateful operators, run through real tasks.

// step is one action of a scriptSource.
type step struct {
	rec     string // record value (JSON); empty: no record
	ts      int64  // record timestamp
	wm      int64  // when non-zero: emit this watermark after the record
	waitOut int    // first wait until the collect sink holds this many records
	advance time.Duration
}

// scriptSource plays a script: records, watermarks, waits on the output and
// moves of the injected clock.
type scriptSource struct {
	steps []step
	i     int
	out   *collected
	clock *fakeClock
	until time.Time
}

func (s *scriptSource) Open(api.Context) error { return nil }
func (s *scriptSource) Next(out api.SourceOutput) (api.SourceStatus, error) {
	for s.i < len(s.steps) {
		st := s.steps[s.i]
		if st.waitOut > 0 && s.out.len() < st.waitOut {
			if s.until.IsZero() {
				s.until = time.Now().Add(20 * time.Second)
			}
			if time.Now().After(s.until) {
				return api.SourceStatus{}, fmt.Errorf("script step %d: output has %d records, waited for %d", s.i, s.out.len(), st.waitOut)
			}
			return api.SourceStatus{WaitUntil: time.Now().Add(2 * time.Millisecond)}, nil
		}
		s.until = time.Time{}
		if st.rec != "" {
			ts := st.ts
			out.Collect(api.Record{Value: []byte(st.rec), Timestamp: ts})
		}
		if st.wm != 0 {
			out.EmitWatermark(st.wm)
		}
		if st.advance > 0 {
			s.clock.advance(st.advance)
		}
		s.i++
		if st.waitOut == 0 && st.advance == 0 {
			continue
		}
		return api.SourceStatus{}, nil
	}
	return api.SourceStatus{End: true}, nil
}
func (s *scriptSource) Position() ([]byte, error) { return nil, nil }
func (s *scriptSource) Restore([]byte) error      { return nil }
func (s *scriptSource) Close() error              { return nil }

// collected is what the collect sink received.
type collected struct {
	mu   sync.Mutex
	vals []string
}

func (c *collected) len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.vals) }
func (c *collected) sorted() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.vals)
	slices.Sort(out)
	return out
}

type scriptSink struct{ c *collected }

func (s *scriptSink) Open(api.Context) error { return nil }
func (s *scriptSink) Write(r api.Record) error {
	s.c.mu.Lock()
	s.c.vals = append(s.c.vals, string(r.Value))
	s.c.mu.Unlock()
	return nil
}
func (s *scriptSink) Finish() error { return nil }
func (s *scriptSink) Close() error  { return nil }

// runScript runs script -> op (keyBy key, parallelism par) -> collect and
// returns the sorted output values.
func runScript(t *testing.T, backend string, op api.OperatorType, cfg map[string]any, par int32, steps []step, clock *fakeClock) []string {
	t.Helper()
	out := &collected{}
	if clock == nil {
		clock = &fakeClock{}
		clock.ms.Store(time.Now().UnixMilli())
	}
	reg := testRegistry(op,
		api.OperatorType{Name: "script", Kind: api.KindSource, NewSource: func(api.Config) (api.Source, error) {
			return &scriptSource{steps: steps, out: out, clock: clock}, nil
		}},
		api.OperatorType{Name: "collect", Kind: api.KindSink, NewSink: func(api.Config) (api.Sink, error) {
			return &scriptSink{c: out}, nil
		}})
	c := newCluster(t, 1, exchange.Options{})
	src := vertex("src", "script", kSource, 1, nil)
	v := vertex("op", op.Name, kOperator, par, cfg)
	v.KeyBy = "key"
	sink := vertex("out", "collect", kSink, par, nil)
	g := &jobgraphv1.JobGraph{Name: op.Name, MaxParallelism: 128, StateBackend: backendBytes(backend),
		Vertices: []*jobgraphv1.Vertex{src, v, sink},
		Edges:    []*jobgraphv1.Edge{edge("src", "op", pHash), edge("op", "out", pForward)}}
	startStateJob(t, c, reg, g, stateJobOptions{clock: clock}).run(t, 60*time.Second)
	return out.sorted()
}

func rec(key string, value float64) string {
	return fmt.Sprintf(`{"key":%q,"value":%v}`, key, value)
}

func backends(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range []string{StateBackendHeap, StateBackendPebble} {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

func TestReduceOperator(t *testing.T) {
	in := []struct {
		key string
		v   float64
	}{{"a", 3}, {"b", 10}, {"a", -1}, {"a", 4.5}, {"b", 2}, {"c", 7}}
	var steps []step
	for _, r := range in {
		steps = append(steps, step{rec: rec(r.key, r.v), ts: api.NoTimestamp})
	}
	want := map[string][]string{
		"sum": {`{"key":"a","sum":3}`, `{"key":"a","sum":2}`, `{"key":"a","sum":6.5}`, `{"key":"b","sum":10}`, `{"key":"b","sum":12}`, `{"key":"c","sum":7}`},
		"min": {`{"key":"a","min":3}`, `{"key":"a","min":-1}`, `{"key":"a","min":-1}`, `{"key":"b","min":10}`, `{"key":"b","min":2}`, `{"key":"c","min":7}`},
		"max": {`{"key":"a","max":3}`, `{"key":"a","max":3}`, `{"key":"a","max":4.5}`, `{"key":"b","max":10}`, `{"key":"b","max":10}`, `{"key":"c","max":7}`},
		"avg": {`{"key":"a","avg":3}`, `{"key":"a","avg":1}`, `{"key":"a","avg":2.1666666666666665}`, `{"key":"b","avg":10}`, `{"key":"b","avg":6}`, `{"key":"c","avg":7}`},
	}
	backends(t, func(t *testing.T, backend string) {
		for _, fn := range reduce.Functions {
			got := runScript(t, backend, reduce.Type(), map[string]any{"field": "value", "fn": fn}, 2, steps, nil)
			w := slices.Clone(want[fn])
			slices.Sort(w)
			if !slices.Equal(got, w) {
				t.Fatalf("%s:\n got %v\nwant %v", fn, got, w)
			}
		}
	})
}

func TestReduceRejectsNonNumbers(t *testing.T) {
	typ := reduce.Type()
	out := &collected{}
	reg := testRegistry(typ,
		api.OperatorType{Name: "script", Kind: api.KindSource, NewSource: func(api.Config) (api.Source, error) {
			return &scriptSource{steps: []step{{rec: rec("a", 1), ts: 1}}, out: out}, nil
		}},
		api.OperatorType{Name: "collect", Kind: api.KindSink, NewSink: func(api.Config) (api.Sink, error) { return &scriptSink{c: out}, nil }})
	c := newCluster(t, 1, exchange.Options{})
	v := vertex("op", "reduce", kOperator, 1, map[string]any{"field": "key"})
	v.KeyBy = "key"
	g := &jobgraphv1.JobGraph{Name: "r", MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{vertex("src", "script", kSource, 1, nil), v, vertex("out", "collect", kSink, 1, nil)},
		Edges:    []*jobgraphv1.Edge{edge("src", "op", pHash), edge("op", "out", pForward)}}
	err := firstError(startStateJob(t, c, reg, g, stateJobOptions{}).wait(t, 30*time.Second))
	if err == nil || !strings.Contains(err.Error(), reduce.ErrNotNumber.Error()) {
		t.Fatalf("got %v, want %v", err, reduce.ErrNotNumber)
	}
}

func TestDedupeOperator(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		clock := &fakeClock{}
		clock.ms.Store(1_000_000)
		steps := []step{
			{rec: rec("a", 1)}, {rec: rec("a", 2)}, {rec: rec("b", 3)}, {rec: rec("a", 4)},
			// 9s later: still within the 10s ttl of a and b.
			{waitOut: 2, advance: 9 * time.Second}, {rec: rec("a", 5)}, {rec: rec("c", 6)},
			// 11s after the first a and b: they pass again, c does not.
			{waitOut: 3, advance: 2 * time.Second}, {rec: rec("a", 7)}, {rec: rec("b", 8)}, {rec: rec("c", 9)},
		}
		for i := range steps {
			steps[i].ts = api.NoTimestamp
		}
		got := runScript(t, backend, dedupe.Type(), map[string]any{"ttl": "10s"}, 1, steps, clock)
		want := []string{rec("a", 1), rec("a", 7), rec("b", 3), rec("b", 8), rec("c", 6)}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("got  %v\nwant %v", got, want)
		}
	})
}

func TestWindowOperatorTumblingAndSliding(t *testing.T) {
	script := func(fired int) []step {
		return []step{
			{rec: rec("a", 1), ts: 0}, {rec: rec("a", 2), ts: 500}, {rec: rec("b", 5), ts: 700},
			{rec: rec("a", 3), ts: 1000}, {rec: rec("a", 4), ts: 1999},
			{rec: rec("a", 5), ts: 2500, wm: 2100},
			// The watermark emits the windows that ended; wait for them
			// before going on (emission on the watermark, not at the end).
			{waitOut: fired},
			{rec: rec("a", 9), ts: 100}, // late for every window: dropped
		}
	}
	backends(t, func(t *testing.T, backend string) {
		got := runScript(t, backend, window.Type(), map[string]any{"size": "1s", "field": "value"}, 2, script(3), nil)
		want := []string{
			`{"key":"a","start":0,"end":1000,"count":2,"sum":3,"min":1,"max":2}`,
			`{"key":"a","start":1000,"end":2000,"count":2,"sum":7,"min":3,"max":4}`,
			`{"key":"a","start":2000,"end":3000,"count":1,"sum":5,"min":5,"max":5}`,
			`{"key":"b","start":0,"end":1000,"count":1,"sum":5,"min":5,"max":5}`,
		}
		if !slices.Equal(got, want) {
			t.Fatalf("tumbling:\n got %v\nwant %v", got, want)
		}
		got = runScript(t, backend, window.Type(), map[string]any{"size": "2s", "slide": "1s"}, 2, script(4), nil)
		want = []string{
			`{"key":"a","start":-1000,"end":1000,"count":2}`,
			`{"key":"a","start":0,"end":2000,"count":4}`,
			`{"key":"a","start":1000,"end":3000,"count":3}`,
			`{"key":"a","start":2000,"end":4000,"count":1}`,
			`{"key":"b","start":-1000,"end":1000,"count":1}`,
			`{"key":"b","start":0,"end":2000,"count":1}`,
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("sliding:\n got %v\nwant %v", got, want)
		}
	})
}

func TestWindowConfig(t *testing.T) {
	typ := window.Type()
	for _, raw := range []map[string]any{{"size": "1s", "slide": "2s"}, {"size": "0s"}} {
		cfg, err := typ.DecodeConfig(raw)
		if err == nil {
			_, err = typ.NewOperator(cfg)
		}
		if err == nil {
			t.Errorf("config %v accepted", raw)
		}
	}
}

func TestSessionOperatorMergesSessions(t *testing.T) {
	steps := []step{
		{rec: rec("a", 1), ts: 0}, {rec: rec("a", 2), ts: 500}, {rec: rec("a", 3), ts: 1400},
		{rec: rec("c", 1), ts: 0}, {rec: rec("c", 2), ts: 1800},
		{rec: rec("c", 4), ts: 900}, // bridges c's two sessions
		{rec: rec("b", 7), ts: 3000, wm: 2900},
		{waitOut: 2},                // a [0,2400) and c [0,2800) fired on the watermark
		{rec: rec("a", 8), ts: 100}, // late: dropped
		{rec: rec("a", 5), ts: 5000},
	}
	backends(t, func(t *testing.T, backend string) {
		got := runScript(t, backend, session.Type(), map[string]any{"gap": "1s", "field": "value"}, 2, steps, nil)
		want := []string{
			`{"key":"a","start":0,"end":2400,"count":3,"sum":6}`,
			`{"key":"a","start":5000,"end":6000,"count":1,"sum":5}`,
			`{"key":"b","start":3000,"end":4000,"count":1,"sum":7}`,
			`{"key":"c","start":0,"end":2800,"count":3,"sum":7}`,
		}
		if !slices.Equal(got, want) {
			t.Fatalf("got  %v\nwant %v", got, want)
		}
		for _, g := range got {
			if !json.Valid([]byte(g)) {
				t.Fatalf("invalid JSON %s", g)
			}
		}
	})
}
