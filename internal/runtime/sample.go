package runtime

import (
	"math"
	"sync/atomic"

	"github.com/flowrt/flow/pkg/api"
)

// TaskSample holds a subtask's cumulative counters for the JobManager's
// read model (backpressure and watermarks per vertex). The task goroutine
// stores into it when it publishes its metrics (after a batch, and its
// times at most every publishInterval), never per record; the TaskManager
// loads it from its heartbeat goroutine. Safe for concurrent use.
type TaskSample struct {
	busyNs, idleNs, bpNs  atomic.Int64
	recordsIn, recordsOut atomic.Int64
	watermark             atomic.Int64
}

// NewTaskSample returns an empty sample: no time, no records, no watermark.
func NewTaskSample() *TaskSample {
	s := &TaskSample{}
	s.watermark.Store(api.NoTimestamp)
	return s
}

// SampleValues is one reading of a TaskSample.
type SampleValues struct {
	// BusyNs, IdleNs and BackpressuredNs: time since the subtask started;
	// their sum is its wall time up to its last publication.
	BusyNs, IdleNs, BackpressuredNs int64
	// RecordsIn and RecordsOut: totals since the subtask started.
	RecordsIn, RecordsOut int64
	// WatermarkMs is the current event-time watermark in milliseconds
	// since the epoch; valid when HasWatermark. EndOfStream: the subtask
	// saw the final watermark (all its inputs ended).
	WatermarkMs  int64
	HasWatermark bool
	EndOfStream  bool
}

// Load reads the sample.
func (s *TaskSample) Load() SampleValues {
	v := SampleValues{
		BusyNs: s.busyNs.Load(), IdleNs: s.idleNs.Load(), BackpressuredNs: s.bpNs.Load(),
		RecordsIn: s.recordsIn.Load(), RecordsOut: s.recordsOut.Load(),
	}
	switch wm := s.watermark.Load(); {
	case wm == api.NoTimestamp || wm == math.MinInt64:
	case wm >= api.MaxWatermark:
		v.EndOfStream = true
	default:
		v.WatermarkMs, v.HasWatermark = wm, true
	}
	return v
}
