package jobmaster

import (
	"time"

	"github.com/flowrt/flow/pkg/checkpoint"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// DurationBuckets are the upper bounds, in seconds, of the checkpoint
// duration histogram (flow_checkpoint_duration_seconds).
var DurationBuckets = [...]float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// CheckpointStats are a job's checkpoint counters since its master started
// (the metrics read them from the view): they are not bounded by the
// history, which keeps the last 100 checkpoints.
type CheckpointStats struct {
	// Completed, Failed and Aborted count finished checkpoints: an abort
	// that counts as a failure (declined, expired, finalize failed) is
	// Failed, one that does not (subsumed, task not ready, finished) is
	// Aborted.
	Completed, Failed, Aborted int64
	// InProgress is the number of checkpoints pending now.
	InProgress int
	// LastSize and LastFullSize are the last completed checkpoint's
	// uploaded bytes (an incremental checkpoint's new files) and its full
	// state size.
	LastSize, LastFullSize int64
	// LastCompleted is when the last checkpoint completed (zero: none).
	LastCompleted time.Time
	// Restored is when the current attempt was deployed from a checkpoint
	// (zero: it started empty).
	Restored time.Time
	// Durations[i] counts completed checkpoints that took at most
	// DurationBuckets[i] seconds and more than the bound before it; the
	// last element counts the longer ones. DurationSum is in seconds.
	Durations   [len(DurationBuckets) + 1]uint64
	DurationSum float64
}

// JobStats are a job's lifecycle figures for the metrics.
type JobStats struct {
	// Restarts is the number of restarts of the job (attempt - 1).
	Restarts int32
	// RunningSince is when the job last became RUNNING (zero when it is
	// not running).
	RunningSince time.Time
}

// completed records a completed checkpoint.
func (s *CheckpointStats) completed(a checkpoint.Action, info *clusterv1.CheckpointInfo) {
	s.Completed++
	d := a.Time.Sub(a.TriggerTime).Seconds()
	i := 0
	for i < len(DurationBuckets) && d > DurationBuckets[i] {
		i++
	}
	s.Durations[i]++
	s.DurationSum += d
	s.LastCompleted = a.Time
	if info != nil {
		s.LastSize, s.LastFullSize = info.GetUploadedSize(), info.GetStateSize()
	}
}

// aborted records an aborted checkpoint.
func (s *CheckpointStats) aborted(r checkpoint.Reason) {
	if r.Counts() {
		s.Failed++
	} else {
		s.Aborted++
	}
}
