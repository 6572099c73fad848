package typed_test

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
)

// harness runs one operator instance on a real heap state backend, the way
// a task drives it: key set before each record, timers fired by the
// backend with their key current.
type harness struct {
	tb    testing.TB
	eng   *statebackend.Engine
	ops   *statebackend.OperatorStore
	op    api.Operator
	clock *clock
	out   []api.Record
	col   collector
	// side holds what each side output received.
	side map[string][]api.Record
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type collector struct {
	h    *harness
	side string // "": the main output
}

func (c collector) Collect(r api.Record) {
	r = api.Record{Key: append([]byte(nil), r.Key...), Value: append([]byte(nil), r.Value...), Timestamp: r.Timestamp}
	if c.side != "" {
		c.h.side[c.side] = append(c.h.side[c.side], r)
		return
	}
	c.h.out = append(c.h.out, r)
}

// discard is the collector of benchmarks.
type discard struct{ n int }

func (d *discard) Collect(api.Record) { d.n++ }

type testCtx struct {
	eng   *statebackend.Engine
	ops   *statebackend.OperatorStore
	clock api.Clock
	sides map[string]api.Collector
}

// SideOutput implements api.SideOutputContext.
func (c *testCtx) SideOutput(name string) api.Collector { return c.sides[name] }

func (c *testCtx) Info() api.TaskInfo {
	return api.TaskInfo{JobID: "j", OperatorID: "op", OperatorUID: "op", Parallelism: 1, MaxParallelism: keygroup.DefaultMaxParallelism}
}
func (c *testCtx) Logger() *slog.Logger                 { return slog.Default() }
func (c *testCtx) Metrics() prometheus.Registerer       { return prometheus.NewRegistry() }
func (c *testCtx) Clock() api.Clock                     { return c.clock }
func (c *testCtx) Done() <-chan struct{}                { return nil }
func (c *testCtx) DataDir() string                      { return "" }
func (c *testCtx) KeyedStateStore() api.KeyedStateStore { return c.eng }
func (c *testCtx) TimerService() api.TimerService       { return c.eng }
func (c *testCtx) OperatorStateStore() api.OperatorStateStore {
	if c.ops == nil {
		return nil
	}
	return c.ops
}

// newHarness builds and opens an operator of typ with config JSON cfg.
func newHarness(tb testing.TB, typ api.OperatorType, cfg string) *harness {
	tb.Helper()
	h := &harness{tb: tb, clock: &clock{now: time.UnixMilli(1_000_000)}}
	h.col = collector{h: h}
	eng, err := heap.New(statebackend.Options{Clock: h.clock})
	if err != nil {
		tb.Fatal(err)
	}
	h.eng = eng
	tb.Cleanup(func() { eng.Close() })
	inst, err := typ.Instantiate([]byte(cfg))
	if err != nil {
		tb.Fatal(err)
	}
	h.op = inst.(api.Operator)
	h.ops = statebackend.NewOperatorStore()
	h.side = map[string][]api.Record{}
	sides := map[string]api.Collector{}
	for _, n := range typ.SideOutputs {
		sides[n] = collector{h: h, side: n}
	}
	if err := h.op.Open(&testCtx{eng: eng, ops: h.ops, clock: h.clock, sides: sides}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.op.Close() })
	return h
}

func (h *harness) setKey(key string) {
	h.eng.SetCurrentKey([]byte(key), keygroup.Assign([]byte(key), h.eng.MaxParallelism()))
}

// process feeds one record; it returns the operator's error.
func (h *harness) process(key, value string, ts int64) error {
	h.setKey(key)
	return h.op.ProcessRecord(api.Record{Key: []byte(key), Value: []byte(value), Timestamp: ts}, h.col)
}

// process2 feeds one record to the second input; key "" is a broadcast
// record (no key, as the runtime gives it: key group -1).
func (h *harness) process2(key, value string, ts int64) error {
	r := api.Record{Value: []byte(value), Timestamp: ts}
	if key == "" {
		h.eng.SetCurrentKey(nil, -1)
	} else {
		h.setKey(key)
		r.Key = []byte(key)
	}
	return h.op.(api.TwoInputOperator).ProcessRecord2(r, h.col)
}

func (h *harness) mustProcess2(key, value string, ts int64) {
	h.tb.Helper()
	if err := h.process2(key, value, ts); err != nil {
		h.tb.Fatal(err)
	}
}

func (h *harness) mustProcess(key, value string, ts int64) {
	h.tb.Helper()
	if err := h.process(key, value, ts); err != nil {
		h.tb.Fatal(err)
	}
}

func (h *harness) fire(t api.Timer) error { return h.op.(api.TimerHandler).OnTimer(t, h.col) }

func (h *harness) watermark(ts int64) {
	h.tb.Helper()
	if err := h.eng.AdvanceWatermark(ts, h.fire); err != nil {
		h.tb.Fatal(err)
	}
}

func (h *harness) processingTime(ms int64) {
	h.tb.Helper()
	if err := h.eng.AdvanceProcessingTime(ms, h.fire); err != nil {
		h.tb.Fatal(err)
	}
}

// values returns the emitted values and clears them.
func (h *harness) values() []string {
	var vs []string
	for _, r := range h.out {
		vs = append(vs, string(r.Value))
	}
	h.out = nil
	return vs
}
