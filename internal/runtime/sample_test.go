package runtime

import (
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// A subtask's TaskSample ends with its record totals, its busy, idle and
// backpressured time, and the final watermark.
func TestTaskSample(t *testing.T) {
	c := newCluster(t, 2, exchange.Options{})
	gen := vertex("gen", "datagen", kSource, 1, map[string]any{"count": 3000, "keys": 10, "rate": 30000})
	gen.Watermarks = &jobgraphv1.WatermarkStrategy{IntervalMs: 5}
	sink := vertex("sink", "blackhole", kSink, 1, nil)
	sink.KeyBy = "key"
	g := &jobgraphv1.JobGraph{Name: "sample", MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{gen, sink}, Edges: []*jobgraphv1.Edge{edge("gen", "sink", pHash)}}
	var mu sync.Mutex
	samples := map[string]*TaskSample{}
	var sawWatermark bool
	start := time.Now()
	j := startJob(t, c, testRegistry(), g, jobOptions{
		assign: func(task string, _ int) int {
			if task == "gen" {
				return 0
			}
			return 1
		},
		env: func(d *clusterv1.TaskDeployment, env *TaskEnv) {
			mu.Lock()
			defer mu.Unlock()
			env.Sample = NewTaskSample()
			samples[d.GetId().GetTask()] = env.Sample
		},
	})
	// Read while the job runs, as the heartbeat does (the race detector
	// checks the loads against the task's stores).
	for {
		mu.Lock()
		s := samples["sink"]
		mu.Unlock()
		if s != nil {
			if v := s.Load(); v.HasWatermark {
				sawWatermark = v.WatermarkMs >= 0 && v.WatermarkMs < 3000
				break
			}
			if v := s.Load(); v.EndOfStream || time.Since(start) > 30*time.Second {
				break
			}
		}
		time.Sleep(time.Millisecond) // polling the sample, which is the condition
	}
	if err := firstError(j.wait(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start).Nanoseconds()
	for task, wantIn := range map[string]int64{"gen": 3000, "sink": 3000} {
		v := samples[task].Load()
		if v.RecordsIn != wantIn || (task == "gen" && v.RecordsOut != 3000) {
			t.Errorf("%s: records in %d out %d, want in %d (a source counts what it reads; gen out 3000)", task, v.RecordsIn, v.RecordsOut, wantIn)
		}
		if sum := v.BusyNs + v.IdleNs + v.BackpressuredNs; sum <= 0 || sum > wall {
			t.Errorf("%s: busy+idle+backpressured = %d ns, want within the run's %d ns", task, sum, wall)
		}
		if !v.EndOfStream || v.HasWatermark {
			t.Errorf("%s: end of stream %v, watermark %v %d; want the final watermark", task, v.EndOfStream, v.HasWatermark, v.WatermarkMs)
		}
	}
	if v := samples["gen"].Load(); v.IdleNs < int64(20*time.Millisecond) {
		t.Errorf("a source throttled to 30000/s for 3000 records was idle only %d ns", v.IdleNs)
	}
	if !sawWatermark {
		t.Errorf("the sink's sample never showed a watermark while the job ran")
	}
}
