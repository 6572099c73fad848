package taskstats

import (
	"sync"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// DefaultWindow is the sample window the ratios and rates are computed
// over when New gets none.
const DefaultWindow = 10 * time.Second

// maxSamples bounds the samples kept per subtask (heartbeats faster than
// window/maxSamples shorten the window).
const maxSamples = 32

// Backpressure level thresholds on the backpressured ratio (Flink's).
const (
	OKMax  = 0.10
	LowMax = 0.50
)

// Level is the backpressure level of a backpressured ratio.
func Level(ratio float64) clusterv1.BackpressureLevel {
	switch {
	case ratio <= OKMax:
		return clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_OK
	case ratio <= LowMax:
		return clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_LOW
	}
	return clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_HIGH
}

// Stats holds the samples of every job. The zero value is not usable: call
// New.
type Stats struct {
	window time.Duration

	mu   sync.Mutex
	jobs map[string]*job
}

type job struct {
	attempt  int32
	subtasks map[key]*subtask
}

type key struct {
	task    string
	subtask int32
}

type subtask struct {
	tm      string
	samples []point // oldest first
}

type point struct {
	at time.Time
	s  *clusterv1.TaskSample
}

// New returns empty stats over window (DefaultWindow if not positive).
func New(window time.Duration) *Stats {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Stats{window: window, jobs: map[string]*job{}}
}

// Window is the sample window.
func (s *Stats) Window() time.Duration { return s.window }

// Add records the samples a TaskManager sent at now. Samples of an attempt
// older than the newest seen for the job are dropped; a newer attempt
// replaces the job's samples.
func (s *Stats) Add(tm string, samples []*clusterv1.TaskSample, now time.Time) {
	if len(samples) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range samples {
		id := x.GetTask()
		if id.GetJobId() == "" || id.GetTask() == "" {
			continue
		}
		j := s.jobs[id.GetJobId()]
		switch {
		case j == nil || id.GetAttempt() > j.attempt:
			j = &job{attempt: id.GetAttempt(), subtasks: map[key]*subtask{}}
			s.jobs[id.GetJobId()] = j
		case id.GetAttempt() < j.attempt:
			continue
		}
		k := key{id.GetTask(), id.GetSubtask()}
		st := j.subtasks[k]
		if st == nil {
			st = &subtask{}
			j.subtasks[k] = st
		}
		if st.tm != tm {
			st.tm, st.samples = tm, st.samples[:0] // counters of another process
		}
		st.samples = append(st.samples, point{at: now, s: x})
		// Keep one sample at or before the window's start as the baseline.
		for len(st.samples) > 2 && !st.samples[1].at.After(now.Add(-s.window)) {
			st.samples = st.samples[1:]
		}
		if len(st.samples) > maxSamples {
			st.samples = append(st.samples[:0:0], st.samples[len(st.samples)-maxSamples:]...)
		}
	}
}

// Vertices computes the view of a job's attempt for its task vertices
// (JobDetails.tasks): every vertex and subtask appears, sampled or not.
// Samples of another attempt are not used.
func (s *Stats) Vertices(jobID string, attempt int32, tasks []*clusterv1.TaskVertexInfo) *clusterv1.GetVertexStatsResponse {
	resp := &clusterv1.GetVertexStatsResponse{JobId: jobID, Attempt: attempt, WindowMs: s.window.Milliseconds()}
	type pair struct {
		tm          string
		base, newer point
	}
	s.mu.Lock()
	got := map[key]pair{}
	if j := s.jobs[jobID]; j != nil && j.attempt == attempt {
		for k, st := range j.subtasks {
			if n := len(st.samples); n > 0 {
				p := pair{tm: st.tm, newer: st.samples[n-1]}
				if n > 1 {
					p.base = st.samples[0]
				}
				got[k] = p
			}
		}
	}
	s.mu.Unlock()

	for _, t := range tasks {
		v := &clusterv1.VertexStats{Id: t.GetId(), Operators: append([]string(nil), t.GetOperators()...), Parallelism: t.GetParallelism()}
		minWM, allEnded, anyWM, missingWM := int64(0), true, false, false
		for i := int32(0); i < t.GetParallelism(); i++ {
			p, ok := got[key{t.GetId(), i}]
			if !ok {
				v.Subtasks = append(v.Subtasks, &clusterv1.SubtaskStats{Subtask: i})
				allEnded, missingWM = false, true
				continue
			}
			sub := compute(p.base, p.newer)
			sub.Subtask, sub.TaskManagerId = i, p.tm
			v.Subtasks = append(v.Subtasks, sub)
			v.SampledSubtasks++
			v.RecordsInPerSecond += sub.GetRecordsInPerSecond()
			v.RecordsOutPerSecond += sub.GetRecordsOutPerSecond()
			v.BusyRatio = max(v.BusyRatio, sub.GetBusyRatio())
			v.IdleRatio = max(v.IdleRatio, sub.GetIdleRatio())
			v.BackpressuredRatio = max(v.BackpressuredRatio, sub.GetBackpressuredRatio())
			switch {
			case sub.GetWatermarkEndOfStream():
			case sub.GetWatermarkTimeMs() == 0:
				allEnded, missingWM = false, true
			default:
				allEnded = false
				if !anyWM || sub.GetWatermarkTimeMs() < minWM {
					minWM = sub.GetWatermarkTimeMs()
				}
				anyWM = true
			}
		}
		if v.SampledSubtasks > 0 {
			v.Level = Level(v.GetBackpressuredRatio())
			resp.MaxLevel = max(resp.MaxLevel, v.Level)
		}
		switch {
		case t.GetParallelism() > 0 && allEnded:
			v.WatermarkEndOfStream = true
		case anyWM && !missingWM:
			v.WatermarkTimeMs = minWM
		}
		resp.Vertices = append(resp.Vertices, v)
	}
	return resp
}

// compute is a subtask's view from the baseline sample (zero: its start)
// to the newer one.
func compute(base, newer point) *clusterv1.SubtaskStats {
	b, n := base.s, newer.s
	busy := n.GetBusyNs() - b.GetBusyNs()
	idle := n.GetIdleNs() - b.GetIdleNs()
	bp := n.GetBackpressuredNs() - b.GetBackpressuredNs()
	in := n.GetRecordsIn() - b.GetRecordsIn()
	out := n.GetRecordsOut() - b.GetRecordsOut()
	wall := busy + idle + bp
	if wall <= 0 || busy < 0 || idle < 0 || bp < 0 {
		// No time published in the window (a finished subtask): from its start.
		busy, idle, bp = n.GetBusyNs(), n.GetIdleNs(), n.GetBackpressuredNs()
		in, out = n.GetRecordsIn(), n.GetRecordsOut()
		wall = busy + idle + bp
	}
	st := &clusterv1.SubtaskStats{Sampled: true, RecordsIn: n.GetRecordsIn(), RecordsOut: n.GetRecordsOut(),
		SampleTimeMs: newer.at.UnixMilli(), WatermarkEndOfStream: n.GetEndOfStream()}
	if wall > 0 {
		w := float64(wall)
		st.BusyRatio, st.IdleRatio, st.BackpressuredRatio = float64(busy)/w, float64(idle)/w, float64(bp)/w
		st.RecordsInPerSecond = float64(max(in, 0)) / (w / 1e9)
		st.RecordsOutPerSecond = float64(max(out, 0)) / (w / 1e9)
	}
	st.Level = Level(st.BackpressuredRatio)
	if n.WatermarkMs != nil && !n.GetEndOfStream() && n.GetWatermarkMs() != 0 {
		st.WatermarkTimeMs = n.GetWatermarkMs()
	}
	return st
}

// ForgetJob drops a job's samples.
func (s *Stats) ForgetJob(jobID string) {
	s.mu.Lock()
	delete(s.jobs, jobID)
	s.mu.Unlock()
}
