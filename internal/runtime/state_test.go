package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/operators/count"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

func backendBytes(typ string) []byte { return []byte(`{"type":"` + typ + `"}`) }

// countGraph is datagen -> count (keyBy key) -> file.
func countGraph(outDir, backend string, records, keys int) *jobgraphv1.JobGraph {
	gen := vertex("gen", "datagen", kSource, 2, map[string]any{"count": records, "keys": keys, "seed": 3})
	cnt := vertex("cnt", "count", kOperator, 3, nil)
	cnt.KeyBy, cnt.Uid = "key", "count-v1"
	sink := vertex("out", "file", kSink, 3, map[string]any{"path": outDir})
	return &jobgraphv1.JobGraph{Name: "keyed-count", MaxParallelism: 128, StateBackend: backendBytes(backend),
		Vertices: []*jobgraphv1.Vertex{gen, cnt, sink},
		Edges:    []*jobgraphv1.Edge{edge("gen", "cnt", pHash), edge("cnt", "out", pForward)}}
}

// TestKeyedCountStateScopedPerKey runs the count operator at parallelism 3
// (max parallelism 128) on both backends: every key's counts are 1..N
// exactly once, each key lives in the subtask owning its key group, and
// both backends give identical output.
func TestKeyedCountStateScopedPerKey(t *testing.T) {
	const records, keys = 20000, 100
	outputs := map[string][]string{}
	for _, backend := range []string{StateBackendHeap, StateBackendPebble} {
		t.Run(backend, func(t *testing.T) {
			c := newCluster(t, 2, exchange.Options{})
			outDir := filepath.Join(t.TempDir(), "out")
			reg := testRegistry(count.Type())
			j := startStateJob(t, c, reg, countGraph(outDir, backend, records, keys), stateJobOptions{})
			j.run(t, 60*time.Second)

			counts := map[string][]int64{}
			owner := map[string]int{}
			for sub, recs := range readLines(t, outDir) {
				for _, r := range recs {
					k, _ := r["key"].(string)
					counts[k] = append(counts[k], num(t, r, "count"))
					if o, ok := owner[k]; ok && o != sub {
						t.Fatalf("key %s counted in subtasks %d and %d", k, o, sub)
					}
					owner[k] = sub
					if want := keygroup.OperatorIndex(keygroup.Assign([]byte(k), 128), 128, 3); want != sub {
						t.Fatalf("key %s counted in subtask %d, want %d", k, sub, want)
					}
				}
			}
			if len(counts) != keys {
				t.Fatalf("got %d keys, want %d", len(counts), keys)
			}
			total := 0
			for k, cs := range counts {
				slices.Sort(cs)
				for i, n := range cs {
					if n != int64(i+1) {
						t.Fatalf("key %s: counts %v are not 1..%d each once", k, cs, len(cs))
					}
				}
				total += len(cs)
			}
			if total != records {
				t.Fatalf("got %d counts, want %d", total, records)
			}
			if backend == StateBackendPebble {
				// Each count subtask kept its state in a Pebble DB under
				// its data dir, named after the operator's uid.
				for s := 0; s < 3; s++ {
					dir := filepath.Join(j.dataDirs[fmt.Sprintf("cnt/%d", s)], "state", "count-v1")
					if m, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*")); len(m) == 0 {
						t.Fatalf("subtask %d: no Pebble DB in %s", s, dir)
					}
				}
			}
			outputs[backend] = sortedLines(t, outDir)
		})
	}
	if h, p := outputs[StateBackendHeap], outputs[StateBackendPebble]; h != nil && p != nil && !slices.Equal(h, p) {
		t.Fatalf("heap and pebble outputs differ (%d vs %d lines)", len(h), len(p))
	}
}

// eventTimerOp registers an event-time timer 100ms after each record and
// checks, per subtask instance, that timers fire once each, in order, with
// their key current, before the watermark that makes them due reaches the
// operator, and that all fire by the end of input.
type eventTimerOp struct {
	store   api.KeyedStateStore
	timers  api.TimerService
	n       *api.ValueState[int64]
	pending map[string]bool // key + "@" + ts
	last    int64
	buf     []byte
}

func (o *eventTimerOp) Open(ctx api.Context) (err error) {
	if o.store, err = api.KeyedStateStoreOf(ctx); err != nil {
		return err
	}
	if o.timers, err = api.TimerServiceOf(ctx); err != nil {
		return err
	}
	o.n, err = api.GetValueState(o.store, api.ValueStateDescriptor[int64]{Name: "n", Codec: api.Int64Codec()})
	o.pending, o.last = map[string]bool{}, api.NoTimestamp
	return err
}

func (o *eventTimerOp) ProcessRecord(r api.Record, _ api.Collector) error {
	if !bytes.Equal(o.store.CurrentKey(), r.Key) {
		return fmt.Errorf("current key %q, record key %q", o.store.CurrentKey(), r.Key)
	}
	n, err := o.n.Value()
	if err != nil {
		return err
	}
	if err := o.n.Update(n + 1); err != nil {
		return err
	}
	ts := r.Timestamp + 100
	o.pending[string(r.Key)+"@"+strconv.FormatInt(ts, 10)] = true
	return o.timers.RegisterEventTimeTimer(ts, nil)
}

func (o *eventTimerOp) OnTimer(tm api.Timer, out api.Collector) error {
	if tm.Domain != api.EventTime {
		return fmt.Errorf("timer domain %v", tm.Domain)
	}
	if !bytes.Equal(o.store.CurrentKey(), tm.Key) {
		return fmt.Errorf("timer of key %q fired with key %q current", tm.Key, o.store.CurrentKey())
	}
	if tm.Timestamp < o.last {
		return fmt.Errorf("timer %d fired after timer %d", tm.Timestamp, o.last)
	}
	if wm := o.timers.CurrentWatermark(); wm < tm.Timestamp {
		return fmt.Errorf("timer %d fired at watermark %d", tm.Timestamp, wm)
	}
	o.last = tm.Timestamp
	id := string(tm.Key) + "@" + strconv.FormatInt(tm.Timestamp, 10)
	if !o.pending[id] {
		return fmt.Errorf("timer %s fired but was not pending (fired twice?)", id)
	}
	delete(o.pending, id)
	n, err := o.n.Value()
	if err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("timer of key %q sees count %d: state not scoped to the timer's key", tm.Key, n)
	}
	o.buf = fmt.Appendf(o.buf[:0], `{"key":%q,"ts":%d,"n":%d}`, tm.Key, tm.Timestamp, n)
	out.Collect(api.Record{Key: tm.Key, Value: o.buf, Timestamp: tm.Timestamp})
	return nil
}

func (o *eventTimerOp) ProcessWatermark(ts int64, _ api.Collector) error {
	for id := range o.pending {
		at := id[bytes.LastIndexByte([]byte(id), '@')+1:]
		if v, _ := strconv.ParseInt(at, 10, 64); v <= ts {
			return fmt.Errorf("watermark %d reached the operator before timer %s fired", ts, id)
		}
	}
	return nil
}

func (o *eventTimerOp) Finish(api.Collector) error {
	if len(o.pending) > 0 {
		return fmt.Errorf("%d timers never fired", len(o.pending))
	}
	return nil
}

func (o *eventTimerOp) Close() error { return nil }

func TestEventTimeTimersFireInOrderWithKeyCurrent(t *testing.T) {
	for _, backend := range []string{StateBackendHeap, StateBackendPebble} {
		t.Run(backend, func(t *testing.T) {
			c := newCluster(t, 2, exchange.Options{})
			outDir := filepath.Join(t.TempDir(), "out")
			reg := testRegistry(api.OperatorType{Name: "evtimer", Kind: api.KindOperator, Keyed: true,
				NewOperator: func(api.Config) (api.Operator, error) { return &eventTimerOp{}, nil }})
			// 4000 records at 20000/s: timestamps n/20 ms, watermarks every
			// 5ms, so timers fire throughout the run and at the end.
			gen := vertex("gen", "datagen", kSource, 2, map[string]any{"count": 4000, "keys": 30, "rate": 20000})
			gen.Watermarks = &jobgraphv1.WatermarkStrategy{IntervalMs: 5}
			op := vertex("op", "evtimer", kOperator, 3, nil)
			op.KeyBy = "key"
			sink := vertex("out", "file", kSink, 3, map[string]any{"path": outDir})
			g := &jobgraphv1.JobGraph{Name: "timers", MaxParallelism: 128, StateBackend: backendBytes(backend),
				Vertices: []*jobgraphv1.Vertex{gen, op, sink},
				Edges:    []*jobgraphv1.Edge{edge("gen", "op", pHash), edge("op", "out", pForward)}}
			startStateJob(t, c, reg, g, stateJobOptions{}).run(t, 60*time.Second)

			fired := 0
			for _, recs := range readLines(t, outDir) {
				fired += len(recs)
			}
			// datagen timestamps are n/20 for n in [0, 4000): (key, ts)
			// pairs repeat, so between 200 and 4000 distinct timers.
			if fired < 200 || fired > 4000 {
				t.Fatalf("%d timers fired", fired)
			}
		})
	}
}

// procTimerOp registers one processing-time timer per key, 1s after the
// key's first record on the injected clock.
type procTimerOp struct {
	store  api.KeyedStateStore
	timers api.TimerService
	seen   *api.ValueState[bool]
	clock  *fakeClock
	fired  *counter
}

func (o *procTimerOp) Open(ctx api.Context) (err error) {
	if o.store, err = api.KeyedStateStoreOf(ctx); err != nil {
		return err
	}
	if o.timers, err = api.TimerServiceOf(ctx); err != nil {
		return err
	}
	o.seen, err = api.GetValueState(o.store, api.ValueStateDescriptor[bool]{Name: "seen", Codec: api.BoolCodec()})
	return err
}

func (o *procTimerOp) ProcessRecord(r api.Record, _ api.Collector) error {
	if seen, err := o.seen.Value(); err != nil || seen {
		return err
	}
	if err := o.seen.Update(true); err != nil {
		return err
	}
	return o.timers.RegisterProcessingTimeTimer(o.timers.CurrentProcessingTime()+1000, nil)
}

func (o *procTimerOp) OnTimer(tm api.Timer, out api.Collector) error {
	if tm.Domain != api.ProcessingTime {
		return fmt.Errorf("timer domain %v", tm.Domain)
	}
	if !bytes.Equal(o.store.CurrentKey(), tm.Key) {
		return fmt.Errorf("timer of key %q fired with key %q current", tm.Key, o.store.CurrentKey())
	}
	if now := o.clock.Now().UnixMilli(); now < tm.Timestamp {
		return fmt.Errorf("processing-time timer %d fired at injected time %d", tm.Timestamp, now)
	}
	o.fired.add(string(tm.Key))
	out.Collect(api.Record{Key: tm.Key, Value: []byte(`{}`), Timestamp: api.NoTimestamp})
	return nil
}

func (o *procTimerOp) Finish(api.Collector) error { return nil }
func (o *procTimerOp) Close() error               { return nil }

// tickSource emits one record for each of keys keys, then moves the
// injected clock 500ms per call until want timers fired (or 20s passed).
type tickSource struct {
	keys, want int
	clock      *fakeClock
	fired      *counter
	emitted    bool
	deadline   time.Time
}

func (s *tickSource) Open(api.Context) error {
	s.deadline = time.Now().Add(20 * time.Second)
	return nil
}
func (s *tickSource) Next(out api.SourceOutput) (api.SourceStatus, error) {
	if !s.emitted {
		for i := 0; i < s.keys; i++ {
			out.Collect(api.Record{Value: fmt.Appendf(nil, `{"key":"k%d"}`, i), Timestamp: api.NoTimestamp})
		}
		s.emitted = true
		return api.SourceStatus{WaitUntil: time.Now().Add(5 * time.Millisecond)}, nil
	}
	total := 0
	for _, n := range s.fired.snapshot() {
		total += n
	}
	if total >= s.want || time.Now().After(s.deadline) {
		return api.SourceStatus{End: true}, nil
	}
	s.clock.advance(500 * time.Millisecond)
	return api.SourceStatus{WaitUntil: time.Now().Add(2 * time.Millisecond)}, nil
}
func (s *tickSource) Position() ([]byte, error) { return nil, nil }
func (s *tickSource) Restore([]byte) error      { return nil }
func (s *tickSource) Close() error              { return nil }

func TestProcessingTimeTimersUseInjectedClock(t *testing.T) {
	for _, backend := range []string{StateBackendHeap, StateBackendPebble} {
		t.Run(backend, func(t *testing.T) {
			const keys = 10
			clock := &fakeClock{}
			clock.ms.Store(1_000_000)
			fired := &counter{}
			reg := testRegistry(
				api.OperatorType{Name: "ticks", Kind: api.KindSource, NewSource: func(api.Config) (api.Source, error) {
					return &tickSource{keys: keys, want: keys, clock: clock, fired: fired}, nil
				}},
				api.OperatorType{Name: "proctimer", Kind: api.KindOperator, Keyed: true, NewOperator: func(api.Config) (api.Operator, error) {
					return &procTimerOp{clock: clock, fired: fired}, nil
				}})
			c := newCluster(t, 1, exchange.Options{})
			src := vertex("src", "ticks", kSource, 1, nil)
			op := vertex("op", "proctimer", kOperator, 2, nil)
			op.KeyBy = "key"
			sink := vertex("out", "blackhole", kSink, 2, nil)
			g := &jobgraphv1.JobGraph{Name: "proc", MaxParallelism: 128, StateBackend: backendBytes(backend),
				Vertices: []*jobgraphv1.Vertex{src, op, sink},
				Edges:    []*jobgraphv1.Edge{edge("src", "op", pHash), edge("op", "out", pForward)}}
			startStateJob(t, c, reg, g, stateJobOptions{clock: clock}).run(t, 60*time.Second)
			got := fired.snapshot()
			if len(got) != keys {
				t.Fatalf("timers fired for %d keys (%v), want %d", len(got), got, keys)
			}
			for k, n := range got {
				if n != 1 {
					t.Fatalf("key %s: timer fired %d times", k, n)
				}
			}
		})
	}
}

// opStateOp declares operator state and, when keyed, keyed state in Open.
type opStateOp struct{ keyed bool }

func (o *opStateOp) Open(ctx api.Context) error {
	ops, err := api.OperatorStateStoreOf(ctx)
	if err != nil {
		return err
	}
	l, err := api.GetOperatorListState(ops, api.OperatorListStateDescriptor[int64]{Name: "subtask", Codec: api.Int64Codec()})
	if err != nil {
		return err
	}
	if err := l.Add(int64(ctx.Info().SubtaskIndex)); err != nil {
		return err
	}
	if o.keyed {
		_, err = api.KeyedStateStoreOf(ctx)
	}
	return err
}
func (o *opStateOp) ProcessRecord(api.Record, api.Collector) error { return nil }
func (o *opStateOp) Finish(api.Collector) error                    { return nil }
func (o *opStateOp) Close() error                                  { return nil }

// TestOperatorStatesReachable sets up a keyed subtask and checks that the
// task reaches every operator's operator store and the keyed operator's
// backend (what the snapshot step needs), with the subtask's key groups.
func TestOperatorStatesReachable(t *testing.T) {
	for _, backend := range []string{StateBackendHeap, StateBackendPebble} {
		t.Run(backend, func(t *testing.T) {
			c := newCluster(t, 1, exchange.Options{})
			reg := testRegistry(
				api.OperatorType{Name: "kop", Kind: api.KindOperator, Keyed: true,
					NewOperator: func(api.Config) (api.Operator, error) { return &opStateOp{keyed: true}, nil }},
				api.OperatorType{Name: "plain", Kind: api.KindOperator,
					NewOperator: func(api.Config) (api.Operator, error) { return &opStateOp{}, nil }})
			gen := vertex("gen", "datagen", kSource, 1, map[string]any{"count": 1})
			k := vertex("k", "kop", kOperator, 3, nil)
			k.KeyBy, k.Uid = "key", "k/v1"
			p := vertex("p", "plain", kOperator, 3, nil)
			sink := vertex("out", "blackhole", kSink, 3, nil)
			g := &jobgraphv1.JobGraph{Name: "st", MaxParallelism: 128, StateBackend: backendBytes(backend),
				Vertices: []*jobgraphv1.Vertex{gen, k, p, sink},
				Edges:    []*jobgraphv1.Edge{edge("gen", "k", pHash), edge("k", "p", pForward), edge("p", "out", pForward)}}
			plan, err := jobgraph.BuildPlan(g)
			if err != nil {
				t.Fatal(err)
			}
			ds := jobgraph.BuildDeployments("job-1", 0, g, plan, func(string, int) string { return c.addrs[0] })
			var d = ds[len(ds)-1] // k, subtask 2
			if d.GetId().GetTask() != "k" || d.GetId().GetSubtask() != 2 {
				t.Fatalf("deployment %v", d.GetId())
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			dataDir := t.TempDir()
			tk := &task{ctx: ctx, d: d, env: TaskEnv{Registry: reg, Exchange: c.managers[0], DataDir: dataDir}, lastWM: api.NoTimestamp, curChannel: -1}
			if err := tk.setup(); err != nil {
				t.Fatal(err)
			}
			states := tk.operatorStates()
			if len(states) != 3 {
				t.Fatalf("%d operator states, want 3 (k, p, out)", len(states))
			}
			be := states[0].Keyed()
			if be == nil || states[1].Keyed() != nil || states[2].Keyed() != nil {
				t.Fatalf("keyed backends: %v %v %v; want only the keyed operator's", be, states[1].Keyed(), states[2].Keyed())
			}
			if want := keygroup.RangeFor(128, 3, 2); be.KeyGroups() != want || be.MaxParallelism() != 128 {
				t.Fatalf("backend key groups %v/%d, want %v/128", be.KeyGroups(), be.MaxParallelism(), want)
			}
			if states[0].UID() != "k/v1" || states[1].UID() != "p" {
				t.Fatalf("uids %q %q", states[0].UID(), states[1].UID())
			}
			for _, st := range states[:2] {
				snap := st.Operator().Snapshot()
				if len(snap) != 1 || snap[0].Spec.Name != "subtask" || len(snap[0].Items) != 1 {
					t.Fatalf("%s: operator state %+v", st.UID(), snap)
				}
			}
			if backend == StateBackendPebble {
				if m, _ := filepath.Glob(filepath.Join(dataDir, "state", "k%2Fv1", "MANIFEST-*")); len(m) == 0 {
					t.Fatalf("no Pebble DB in %s", filepath.Join(dataDir, "state", "k%2Fv1"))
				}
			}
			if err := tk.cleanup(); err != nil {
				t.Fatal(err)
			}
			if states[0].Keyed() != nil {
				t.Fatal("backend not released by cleanup")
			}
		})
	}
}

func TestStateSetupErrors(t *testing.T) {
	c := newCluster(t, 1, exchange.Options{})
	reg := testRegistry(count.Type())
	run := func(g *jobgraphv1.JobGraph) error {
		j := startStateJob(t, c, reg, g, stateJobOptions{})
		return firstError(j.wait(t, 30*time.Second))
	}
	g := countGraph(t.TempDir(), "rocks", 10, 2)
	if err := run(g); err == nil || !bytes.Contains([]byte(err.Error()), []byte(`stateBackend type "rocks" is unknown`)) {
		t.Fatalf("unknown backend: %v", err)
	}
	g = countGraph(t.TempDir(), StateBackendHeap, 10, 2)
	g.Vertices[1].KeyBy = ""
	g.Edges[0].Partitioning = pRebal
	if err := run(g); err == nil || !bytes.Contains([]byte(err.Error()), []byte(`keeps keyed state: give its input a keyBy`)) {
		t.Fatalf("keyed type without keyBy: %v", err)
	}
}

// noHandlerOp registers a timer but does not implement api.TimerHandler.
type noHandlerOp struct{ timers api.TimerService }

func (o *noHandlerOp) Open(ctx api.Context) (err error) {
	o.timers, err = api.TimerServiceOf(ctx)
	return err
}
func (o *noHandlerOp) ProcessRecord(r api.Record, _ api.Collector) error {
	return o.timers.RegisterEventTimeTimer(5, nil)
}
func (o *noHandlerOp) Finish(api.Collector) error { return nil }
func (o *noHandlerOp) Close() error               { return nil }

func TestTimerWithoutHandlerFailsTask(t *testing.T) {
	c := newCluster(t, 1, exchange.Options{})
	reg := testRegistry(api.OperatorType{Name: "nohandler", Kind: api.KindOperator, Keyed: true,
		NewOperator: func(api.Config) (api.Operator, error) { return &noHandlerOp{}, nil }})
	g := countGraph(t.TempDir(), StateBackendHeap, 10, 2)
	g.Vertices[1].Type = "nohandler"
	j := startStateJob(t, c, reg, g, stateJobOptions{})
	err := firstError(j.wait(t, 30*time.Second))
	if !errors.Is(err, errNoTimerHandler) {
		t.Fatalf("got %v, want errNoTimerHandler", err)
	}
}
