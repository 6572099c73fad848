package taskstats

import (
	"testing"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

const ms = int64(time.Millisecond)

func sample(task string, sub, attempt int32, busy, idle, bp, in, out int64, wm *int64) *clusterv1.TaskSample {
	return &clusterv1.TaskSample{Task: &clusterv1.TaskID{JobId: "j", Attempt: attempt, Task: task, Subtask: sub},
		BusyNs: busy * ms, IdleNs: idle * ms, BackpressuredNs: bp * ms, RecordsIn: in, RecordsOut: out, WatermarkMs: wm}
}

func ptr(v int64) *int64 { return &v }

var tasks = []*clusterv1.TaskVertexInfo{
	{Id: "src", Operators: []string{"src"}, Parallelism: 2},
	{Id: "slow", Operators: []string{"slow", "sink"}, Parallelism: 1},
}

func TestLevel(t *testing.T) {
	for _, c := range []struct {
		r    float64
		want clusterv1.BackpressureLevel
	}{{0, clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_OK}, {0.10, clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_OK},
		{0.11, clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_LOW}, {0.5, clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_LOW},
		{0.51, clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_HIGH}, {1, clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_HIGH}} {
		if got := Level(c.r); got != c.want {
			t.Errorf("Level(%v) = %v, want %v", c.r, got, c.want)
		}
	}
}

func TestVerticesOverTheWindow(t *testing.T) {
	s := New(10 * time.Second)
	t0 := time.Unix(1000, 0)
	// First heartbeat: measured from the start.
	s.Add("tm-a", []*clusterv1.TaskSample{
		sample("src", 0, 1, 500, 0, 500, 0, 1000, ptr(5000)),
		sample("src", 1, 1, 1000, 0, 0, 0, 500, ptr(4000)),
	}, t0)
	s.Add("tm-b", []*clusterv1.TaskSample{sample("slow", 0, 1, 1000, 0, 0, 1500, 1500, nil)}, t0)
	r := s.Vertices("j", 1, tasks)
	src, slow := r.GetVertices()[0], r.GetVertices()[1]
	if got := src.GetSubtasks()[0].GetBackpressuredRatio(); got != 0.5 {
		t.Errorf("src/0 backpressured %v, want 0.5", got)
	}
	if src.GetLevel() != clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_LOW || src.GetBackpressuredRatio() != 0.5 {
		t.Errorf("src level %v ratio %v, want LOW 0.5", src.GetLevel(), src.GetBackpressuredRatio())
	}
	if src.GetRecordsOutPerSecond() != 1500 {
		t.Errorf("src out/s %v, want 1500 (1000/s + 500/s)", src.GetRecordsOutPerSecond())
	}
	if src.GetWatermarkTimeMs() != 4000 {
		t.Errorf("src watermark %d, want the minimum 4000", src.GetWatermarkTimeMs())
	}
	if slow.GetWatermarkTimeMs() != 0 || slow.GetSubtasks()[0].GetWatermarkTimeMs() != 0 {
		t.Errorf("slow has no watermark, got %d", slow.GetWatermarkTimeMs())
	}
	if slow.GetLevel() != clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_OK || slow.GetBusyRatio() != 1 {
		t.Errorf("slow level %v busy %v, want OK 1", slow.GetLevel(), slow.GetBusyRatio())
	}

	// Two seconds later src/0 spent them all backpressured; the ratio is
	// of the window, not of the time since the start.
	s.Add("tm-a", []*clusterv1.TaskSample{
		sample("src", 0, 1, 500, 0, 2500, 0, 1200, ptr(6000)),
		sample("src", 1, 1, 1100, 0, 1900, 0, 700, ptr(7000)),
	}, t0.Add(2*time.Second))
	r = s.Vertices("j", 1, tasks)
	src = r.GetVertices()[0]
	if got := src.GetSubtasks()[0].GetBackpressuredRatio(); got != 1 {
		t.Errorf("src/0 backpressured %v over the window, want 1", got)
	}
	if src.GetLevel() != clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_HIGH || r.GetMaxLevel() != clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_HIGH {
		t.Errorf("src level %v, job max %v, want HIGH", src.GetLevel(), r.GetMaxLevel())
	}
	if got := src.GetSubtasks()[0].GetRecordsOutPerSecond(); got != 100 {
		t.Errorf("src/0 out/s %v, want 100", got)
	}
	if src.GetWatermarkTimeMs() != 6000 {
		t.Errorf("src watermark %d, want 6000", src.GetWatermarkTimeMs())
	}

	// Samples older than the window stop counting: only the last baseline.
	for i := 3; i <= 20; i++ {
		s.Add("tm-a", []*clusterv1.TaskSample{sample("src", 0, 1, 500+int64(i)*1000, 0, 2500, 0, 1200, ptr(6000))}, t0.Add(time.Duration(i)*time.Second))
	}
	if got := s.Vertices("j", 1, tasks).GetVertices()[0].GetSubtasks()[0].GetBackpressuredRatio(); got != 0 {
		t.Errorf("src/0 backpressured %v after a busy window, want 0", got)
	}

	// Another attempt: the old samples are gone; unsampled subtasks appear.
	r = s.Vertices("j", 2, tasks)
	if r.GetVertices()[0].GetSampledSubtasks() != 0 || len(r.GetVertices()[0].GetSubtasks()) != 2 || r.GetVertices()[0].GetSubtasks()[1].GetSampled() {
		t.Errorf("attempt 2 before its samples: %v", r.GetVertices()[0])
	}
	s.Add("tm-a", []*clusterv1.TaskSample{sample("src", 0, 2, 10, 0, 0, 0, 1, nil)}, t0.Add(30*time.Second))
	s.Add("tm-a", []*clusterv1.TaskSample{sample("src", 0, 1, 10, 0, 0, 0, 1, nil)}, t0.Add(30*time.Second))
	if got := s.Vertices("j", 1, tasks).GetVertices()[0].GetSampledSubtasks(); got != 0 {
		t.Errorf("attempt 1 still has %d sampled subtasks after attempt 2 started", got)
	}
	if got := s.Vertices("j", 2, tasks).GetVertices()[0].GetSampledSubtasks(); got != 1 {
		t.Errorf("attempt 2 has %d sampled subtasks, want 1", got)
	}
}

func TestEndOfStreamAndFinishedSubtask(t *testing.T) {
	s := New(time.Second)
	t0 := time.Unix(1000, 0)
	done := sample("slow", 0, 1, 900, 100, 0, 10, 10, nil)
	done.EndOfStream = true
	s.Add("tm-b", []*clusterv1.TaskSample{done}, t0)
	s.Add("tm-b", []*clusterv1.TaskSample{done}, t0.Add(3*time.Second)) // no time published since
	v := s.Vertices("j", 1, tasks).GetVertices()[1]
	if !v.GetWatermarkEndOfStream() || v.GetWatermarkTimeMs() != 0 {
		t.Errorf("vertex end of stream %v watermark %d", v.GetWatermarkEndOfStream(), v.GetWatermarkTimeMs())
	}
	if got := v.GetSubtasks()[0].GetBusyRatio(); got != 0.9 {
		t.Errorf("busy %v, want 0.9 from the start", got)
	}
}
