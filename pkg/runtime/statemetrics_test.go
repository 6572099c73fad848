package runtime

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
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
