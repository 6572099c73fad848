package runtime

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// keepRegistry is a Registerer that keeps every collector registered through
// it so tests can read metrics after the task unregistered them.
type keepRegistry struct {
	*prometheus.Registry
	mu   sync.Mutex
	kept []prometheus.Collector
}

func newKeepRegistry() *keepRegistry { return &keepRegistry{Registry: prometheus.NewRegistry()} }

func (k *keepRegistry) Register(c prometheus.Collector) error {
	k.mu.Lock()
	k.kept = append(k.kept, c)
	k.mu.Unlock()
	return k.Registry.Register(c)
}

func (k *keepRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := k.Register(c); err != nil {
			panic(err)
		}
	}
}

// sum adds up the kept collectors' samples of metric name whose labels
// include want.
func (k *keepRegistry) sum(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	total := 0.0
	for _, c := range k.kept {
		r := prometheus.NewPedanticRegistry()
		if err := r.Register(c); err != nil {
			continue
		}
		mfs, err := r.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		metric:
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				for k, v := range want {
					if labels[k] != v {
						continue metric
					}
				}
				total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return total
}

func errorJob(onError string) *jobgraphv1.JobGraph {
	m := vertex("m", "map", kOperator, 1, map[string]any{"expression": `seq == 37 ? int(key) : seq`})
	m.OnError = onError
	return &jobgraphv1.JobGraph{Name: "err",
		Vertices: []*jobgraphv1.Vertex{vertex("gen", "datagen", kSource, 1, map[string]any{"count": 100}), m,
			vertex("sink", "collect", kSink, 1, nil)},
		Edges: []*jobgraphv1.Edge{edge("gen", "m", pRebal), edge("m", "sink", pForward)}}
}

func TestBadRecordFailsTask(t *testing.T) {
	st := newStore()
	c := newCluster(t, 1, exchange.Options{})
	j := startJob(t, c, testRegistry(collectType("collect", st, 0)), errorJob(""), jobOptions{})
	errs := j.wait(t, 30*time.Second)
	err := errs["m/0"]
	if err == nil || isCanceled(err) {
		t.Fatalf("m/0 returned %v, want a failure", err)
	}
	want := `operator "m" (subtask 0 of 1): record 38 from channel 0: expression "seq == 37 ? int(key) : seq"`
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q\ndoes not contain %q", err, want)
	}
}

func TestBadRecordSkipped(t *testing.T) {
	st := newStore()
	reg := newKeepRegistry()
	c := newCluster(t, 1, exchange.Options{})
	j := startJob(t, c, testRegistry(collectType("collect", st, 0)), errorJob("skip"), jobOptions{metrics: reg})
	if err := firstError(j.wait(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := st.count(); n != 99 {
		t.Fatalf("sink got %d records, want 99", n)
	}
	if got := reg.sum(t, "flow_operator_records_skipped_total", map[string]string{"operator": "m", "flow_job": "job-1", "subtask": "0"}); got != 1 {
		t.Fatalf("skipped = %v, want 1", got)
	}
	if got := reg.sum(t, "flow_task_records_in_total", map[string]string{"task": "m"}); got != 100 {
		t.Fatalf("records in = %v, want 100", got)
	}
	// Everything was unregistered when the tasks ended.
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Fatalf("%d metric families still registered (%v)", len(mfs), err)
	}
}

func TestPanicFailsTask(t *testing.T) {
	st := newStore()
	c := newCluster(t, 1, exchange.Options{})
	g := &jobgraphv1.JobGraph{Name: "panic",
		Vertices: []*jobgraphv1.Vertex{
			vertex("gen", "datagen", kSource, 1, map[string]any{"count": 10}),
			vertex("p", "panicky", kOperator, 1, nil),
			vertex("sink", "collect", kSink, 1, nil)},
		Edges: []*jobgraphv1.Edge{edge("gen", "p", pForward), edge("p", "sink", pForward)}}
	reg := testRegistry(collectType("collect", st, 0), panicType("panicky", firstGenValue()))
	j := startJob(t, c, reg, g, jobOptions{})
	err := j.wait(t, 30*time.Second)["gen/0"]
	if err == nil || !strings.Contains(err.Error(), `operator "p" (subtask 0 of 1): record 1 from the source: panic: boom`) {
		t.Fatalf("err = %v", err)
	}
}

// firstGenValue is the value of datagen's first record with default config.
func firstGenValue() string { return string(datagen.AppendRecord(nil, 0, 100, 0, 0)) }

func TestCancelStopsPromptly(t *testing.T) {
	c := newCluster(t, 2, exchange.Options{})
	m := vertex("m", "map", kOperator, 2, map[string]any{"expression": "value"})
	m.KeyBy = "key"
	g := &jobgraphv1.JobGraph{Name: "cancel",
		Vertices: []*jobgraphv1.Vertex{vertex("gen", "datagen", kSource, 2, nil), m, vertex("sink", "blackhole", kSink, 2, nil)},
		Edges:    []*jobgraphv1.Edge{edge("gen", "m", pHash), edge("m", "sink", pForward)}}
	reg := newKeepRegistry()
	j := startJob(t, c, testRegistry(), g, jobOptions{metrics: reg})
	waitFor(t, 10*time.Second, "records across the exchange", func() bool {
		return reg.sum(t, "flow_task_records_in_total", map[string]string{"task": "m"}) > 0
	})
	start := time.Now()
	j.cancel()
	errs := j.wait(t, 5*time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancel took %s", d)
	}
	for k, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s returned %v, want context.Canceled", k, err)
		}
	}
}

func TestBackpressure(t *testing.T) {
	st := newStore()
	reg := newKeepRegistry()
	c := newCluster(t, 2, exchange.Options{BufferSize: 1024, BuffersPerChannel: 2, FloatingBuffers: 1})
	g := &jobgraphv1.JobGraph{Name: "bp",
		Vertices: []*jobgraphv1.Vertex{vertex("gen", "datagen", kSource, 1, nil), vertex("sink", "slow", kSink, 1, nil)},
		Edges:    []*jobgraphv1.Edge{edge("gen", "sink", pRebal)}}
	j := startJob(t, c, testRegistry(collectType("slow", st, 2*time.Millisecond)), g, jobOptions{metrics: reg,
		assign: func(task string, _ int) int {
			if task == "gen" {
				return 0
			}
			return 1
		}})
	// Records per 1 KiB buffer: about 14. In flight at most: the producer
	// pool (2+1 buffers) plus the consumer's credit (2), and one open buffer.
	const bound = 8 * 16
	var genStart, sinkStart float64
	for i := 0; i < 12; i++ {
		time.Sleep(100 * time.Millisecond) // the sampling period of the rates
		produced := reg.sum(t, "flow_task_records_in_total", map[string]string{"task": "gen"})
		consumed := float64(st.count())
		if produced-consumed > bound {
			t.Fatalf("after %dms the source produced %v records but the sink consumed only %v: more than %d in flight", (i+1)*100, produced, consumed, bound)
		}
		if i == 3 {
			genStart, sinkStart = produced, consumed
		}
	}
	genRate := reg.sum(t, "flow_task_records_in_total", map[string]string{"task": "gen"}) - genStart
	sinkRate := float64(st.count()) - sinkStart
	if genRate > sinkRate+bound {
		t.Fatalf("source produced %v records while the sink took %v: not slowed to the sink's rate", genRate, sinkRate)
	}
	if bp := reg.sum(t, "flow_task_backpressured_seconds_total", map[string]string{"task": "gen"}); bp < 0.3 {
		t.Fatalf("backpressured seconds = %v, want most of the run", bp)
	}
	j.cancel()
	j.wait(t, 5*time.Second)
}

func TestKeyByErrorNamesEmittingOperator(t *testing.T) {
	c := newCluster(t, 1, exchange.Options{})
	sink := vertex("sink", "blackhole", kSink, 2, nil)
	sink.KeyBy = `seq == 3 ? int(key) : key`
	g := &jobgraphv1.JobGraph{Name: "keyerr",
		Vertices: []*jobgraphv1.Vertex{vertex("gen", "datagen", kSource, 1, map[string]any{"count": 10}), sink},
		Edges:    []*jobgraphv1.Edge{edge("gen", "sink", pHash)}}
	j := startJob(t, c, testRegistry(), g, jobOptions{})
	err := j.wait(t, 30*time.Second)["gen/0"]
	if err == nil || !strings.Contains(err.Error(), `operator "gen" (subtask 0 of 1): record 4 from the source: keyBy of "sink": expression "seq == 3 ? int(key) : key"`) {
		t.Fatalf("err = %v", err)
	}
}
