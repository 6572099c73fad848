package runtime

import (
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Task and operator metrics: records in and out per operator of a chain,
// and per task busy + idle + backpressured time adding up to the wall time
// it ran, labelled flow_job and flow_job_name (never "job", which
// Prometheus owns).
func TestTaskAndOperatorMetrics(t *testing.T) {
	const records = 2000
	c := newCluster(t, 2, exchange.Options{})
	m := vertex("m", "filter", kOperator, 2, map[string]any{"condition": "value % 2 == 0"})
	g := &jobgraphv1.JobGraph{Name: "metrics-job",
		Vertices: []*jobgraphv1.Vertex{
			// 2000 records at 8000/s: the source mostly waits.
			vertex("gen", "datagen", kSource, 1, map[string]any{"count": records, "rate": 8000, "keys": 10}),
			m, vertex("sink", "blackhole", kSink, 2, nil)},
		Edges: []*jobgraphv1.Edge{edge("gen", "m", pRebal), edge("m", "sink", pForward)}}
	reg := newKeepRegistry()
	start := time.Now()
	j := startJob(t, c, testRegistry(), g, jobOptions{metrics: reg})
	if err := firstError(j.wait(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start).Seconds()

	job := map[string]string{"flow_job": "job-1", "flow_job_name": "metrics-job"}
	with := func(kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range job {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	if got := reg.sum(t, "flow_operator_records_out_total", with("operator", "gen")); got != records {
		t.Errorf("gen emitted %v records, want %d", got, records)
	}
	if got := reg.sum(t, "flow_operator_records_in_total", with("operator", "m")); got != records {
		t.Errorf("m received %v records, want %d", got, records)
	}
	// datagen's value is a hash mod 1000: about half are even.
	passed := reg.sum(t, "flow_operator_records_out_total", with("operator", "m"))
	if passed <= 0 || passed >= records {
		t.Errorf("m emitted %v of %d records; the filter keeps about half", passed, records)
	}
	if got := reg.sum(t, "flow_operator_records_in_total", with("operator", "sink")); got != passed {
		t.Errorf("sink received %v records, m emitted %v", got, passed)
	}
	if got := reg.sum(t, "flow_task_records_in_total", with("task", "m")); got != records {
		t.Errorf("task m received %v records, want %d", got, records)
	}

	// Bytes cross the exchange from gen to m: what gen emitted, m received.
	out := reg.sum(t, "flow_task_bytes_out_total", with("task", "gen"))
	if in := reg.sum(t, "flow_task_bytes_in_total", with("task", "m")); out < records*10 || in != out {
		t.Errorf("gen emitted %v bytes, m received %v; want equal and at least 10 per record", out, in)
	}
	for _, task := range []string{"gen", "m"} {
		sub := "0"
		busy := reg.sum(t, "flow_task_busy_seconds_total", with("task", task, "subtask", sub))
		idle := reg.sum(t, "flow_task_idle_seconds_total", with("task", task, "subtask", sub))
		bp := reg.sum(t, "flow_task_backpressured_seconds_total", with("task", task, "subtask", sub))
		total := busy + idle + bp
		// Each subtask ran within the job's wall time and for most of it
		// (the input lasts about 0.25 s; setup and teardown are the rest).
		if total > wall || total < 0.2 {
			t.Errorf("task %s: busy %.3fs + idle %.3fs + backpressured %.3fs = %.3fs; the job ran %.3fs", task, busy, idle, bp, total, wall)
		}
		if idle <= busy {
			t.Errorf("task %s: idle %.3fs <= busy %.3fs; its input arrives at 8000 records/s", task, idle, busy)
		}
	}
}
