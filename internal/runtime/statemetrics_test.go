package runtime

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// timerOp keeps a value per key and registers a processing-time timer,
// due at once, for each of the first `limit` records of its subtask;
// it counts what it registered and what fired.
type timerOp struct {
	limit            int64
	registered, fire *atomic.Int64
	ts               api.TimerService
	v                *api.ValueState[int64]
	n                int64
}

func timerOpType(registered, fired *atomic.Int64) api.OperatorType {
	return api.OperatorType{Name: "timers", Kind: api.KindOperator, Keyed: true,
		NewOperator: func(api.Config) (api.Operator, error) {
			return &timerOp{limit: 100, registered: registered, fire: fired}, nil
		}}
}

func (o *timerOp) Open(ctx api.Context) (err error) {
	if o.ts, err = api.TimerServiceOf(ctx); err != nil {
		return err
	}
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	o.v, err = api.GetValueState(store, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	return err
}

func (o *timerOp) ProcessRecord(r api.Record, out api.Collector) error {
	if err := o.v.Update(o.n); err != nil {
		return err
	}
	if o.n >= o.limit {
		return nil
	}
	o.n++
	// A namespace per record: every registration is a distinct timer.
	if err := o.ts.RegisterProcessingTimeTimer(o.ts.CurrentProcessingTime(), binary.BigEndian.AppendUint64(nil, uint64(o.n))); err != nil {
		return err
	}
	o.registered.Add(1)
	return nil
}

func (o *timerOp) OnTimer(api.Timer, api.Collector) error { o.fire.Add(1); return nil }
func (o *timerOp) Finish(api.Collector) error             { return nil }
func (o *timerOp) Close() error                           { return nil }

// A keyed operator's state metrics reach the registry while the job runs:
// timers registered and fired equal what the operator did, keys and
// bytes are reported with the backend's name, and Pebble's DB metrics
// appear for a Pebble backend only.
func TestStateMetrics(t *testing.T) {
	for _, backend := range []string{StateBackendHeap, StateBackendPebble} {
		t.Run(backend, func(t *testing.T) {
			var registered, fired atomic.Int64
			c := newCluster(t, 1, exchange.Options{})
			opv := vertex("op", "timers", kOperator, 2, nil)
			opv.KeyBy = "key"
			g := &jobgraphv1.JobGraph{Name: "state-metrics",
				StateBackend: []byte(fmt.Sprintf(`{"type":%q}`, backend)),
				Vertices: []*jobgraphv1.Vertex{
					vertex("gen", "datagen", kSource, 1, map[string]any{"rate": 2000, "keys": 50}),
					opv,
					vertex("sink", "blackhole", kSink, 2, nil)},
				Edges: []*jobgraphv1.Edge{edge("gen", "op", pHash), edge("op", "sink", pForward)}}
			reg := newKeepRegistry()
			j := startJob(t, c, testRegistry(timerOpType(&registered, &fired)), g, jobOptions{metrics: reg})
			op := map[string]string{"flow_job": "job-1", "flow_job_name": "state-metrics", "operator": "op"}
			waitFor(t, 20*time.Second, "200 timers registered and fired, in the metrics", func() bool {
				return registered.Load() == 200 && fired.Load() == 200 &&
					reg.sum(t, "flow_state_timers_registered_total", op) == 200 &&
					reg.sum(t, "flow_state_timers_fired_total", op) == 200
			})
			with := map[string]string{"operator": "op", "backend": backend}
			waitFor(t, 20*time.Second, "50 keys and their accesses", func() bool {
				keys := reg.sum(t, "flow_state_keys", with)
				// Pebble estimates keys from flushed SST files only.
				return (keys == 50 || backend == StateBackendPebble) &&
					reg.sum(t, "flow_state_size_bytes", with) > 0 &&
					reg.sum(t, "flow_state_accesses_total", with) > 0
			})
			memtable := reg.sum(t, "flow_state_pebble_memtable_bytes", map[string]string{"operator": "op"})
			if (memtable > 0) != (backend == StateBackendPebble) {
				t.Errorf("%s: pebble memtable bytes = %v", backend, memtable)
			}
			j.cancel()
			j.wait(t, 10*time.Second)
			if got := reg.sum(t, "flow_state_timers_registered_total", op); got != 0 {
				t.Errorf("after the job ended: timers registered still reported (%v)", got)
			}
		})
	}
}

// While a canceled attempt of a subtask still holds its backend, the new
// attempt's backend with the same labels is reported, once.
func TestStateMetricsNewestAttemptWins(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	c, err := stateCollectorOf(reg)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := stateCollectorOf(reg); err != nil || again != c {
		t.Fatalf("second lookup: %p, %v; want the registered collector %p", again, err, c)
	}
	labels := []string{"j", "name", "op", "0", StateBackendHeap}
	var entries []*stateEntry
	for i, timers := range []int{3, 5} {
		be, err := heap.New(statebackend.Options{})
		if err != nil {
			t.Fatal(err)
		}
		be.SetCurrentKey([]byte("k"), 0)
		for n := range timers {
			if err := be.RegisterEventTimeTimer(int64(n), nil); err != nil {
				t.Fatal(err)
			}
		}
		be.PublishMetrics()
		entries = append(entries, &stateEntry{labels: labels, be: be})
		c.add(entries[i])
	}
	registered := func() []float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []float64
		for _, mf := range mfs {
			if mf.GetName() == "flow_state_timers_registered_total" {
				for _, m := range mf.GetMetric() {
					out = append(out, m.GetCounter().GetValue())
				}
			}
		}
		return out
	}
	if got := registered(); len(got) != 1 || got[0] != 5 {
		t.Fatalf("timers registered series = %v, want [5] (the newest backend)", got)
	}
	c.remove(entries[1])
	if got := registered(); len(got) != 1 || got[0] != 3 {
		t.Fatalf("after the newest left: %v, want [3]", got)
	}
	c.remove(entries[0])
	if got := registered(); len(got) != 0 {
		t.Fatalf("after both left: %v, want none", got)
	}
}

// The TaskManager's block cache metrics read the cache until released.
func TestStateCacheMetrics(t *testing.T) {
	cache := pebble.NewCache(1 << 20)
	defer cache.Unref()
	m := NewStateCacheMetrics(cache)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "flow_state_pebble_block_cache_capacity_bytes" {
				if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 1<<20 {
					t.Fatalf("capacity = %v, want %d", v, 1<<20)
				}
			}
		}
		return len(mfs)
	}
	if n := count(); n != 4 {
		t.Fatalf("%d block cache metrics, want 4", n)
	}
	m.Release()
	if n := count(); n != 0 {
		t.Fatalf("%d block cache metrics after Release, want 0", n)
	}
}
