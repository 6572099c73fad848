package api

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TaskInfo describes the subtask an instance runs in.
type TaskInfo struct {
	JobID          string
	JobName        string
	OperatorID     string
	OperatorUID    string
	SubtaskIndex   int
	Parallelism    int
	MaxParallelism int
	Attempt        int
}

// Context is handed to every Source, Operator and Sink when it opens.
type Context interface {
	Info() TaskInfo
	Logger() *slog.Logger
	// Metrics is the registerer for the operator's own metrics; the runtime
	// adds flow_job, flow_job_name, operator and subtask labels.
	Metrics() prometheus.Registerer
	// Clock is the processing-time clock (injectable in tests).
	Clock() Clock
	// Done is closed when the task is canceled.
	Done() <-chan struct{}
	// DataDir is a directory private to this subtask (e.g. for a sink's
	// pending files or an embedded store).
	DataDir() string
}

// Clock returns processing time. The runtime provides a wall clock; tests
// inject their own.
type Clock interface {
	Now() time.Time
}

// SourceStatus is what Source.Next reports after each call.
type SourceStatus struct {
	// End is true when the source has no more input, ever.
	End bool
	// WaitUntil, when non-zero and End is false, asks the runtime not to call
	// Next again before this time (rate limiting, polling). The runtime keeps
	// serving timers and control messages meanwhile.
	WaitUntil time.Time
}

// SourceOutput is what a source emits into.
type SourceOutput interface {
	Collector
	// EmitWatermark declares that no record with a smaller timestamp follows.
	EmitWatermark(ts int64)
	// MarkIdle says this source subtask emits nothing for now; downstream
	// ignores it when computing watermarks until it emits again.
	MarkIdle()
}

// Source reads external data. Each subtask gets its own instance and picks
// its share of the input from Info().SubtaskIndex and Info().Parallelism.
type Source interface {
	Open(ctx Context) error
	// Next emits a bounded amount of records (a batch) and returns. It must
	// not block for long: the task's mailbox runs between calls.
	Next(out SourceOutput) (SourceStatus, error)
	// Position returns the source's current position, which a checkpoint
	// stores; Restore rewinds to it.
	Position() ([]byte, error)
	Restore(position []byte) error
	Close() error
}

// Operator transforms records. An operator on a keyed stream sees the key in
// Record.Key; keyed state and timers are obtained from the Context.
type Operator interface {
	Open(ctx Context) error
	ProcessRecord(r Record, out Collector) error
	// Finish is called once when all inputs ended, before Close; the operator
	// may emit its last records.
	Finish(out Collector) error
	Close() error
}

// TwoInputOperator is an Operator with two inputs, such as a join or the
// broadcast state pattern: ProcessRecord receives the records of the first
// input (the first of the spec's inputs), ProcessRecord2 those of the
// second. Register it with OperatorType.Inputs = 2. Both run on the task
// goroutine, never concurrently; the watermark the operator sees is the
// minimum of both inputs', and checkpoint barriers are aligned across both.
// When both inputs are keyed, keyed state and timers are scoped to the
// record's key, whichever input it came from (records that meet must give
// equal key bytes). A broadcast second input's records carry no key: read
// and write broadcast operator state there (GetBroadcastState); keyed state
// accesses and timers fail for them.
type TwoInputOperator interface {
	Operator
	ProcessRecord2(r Record, out Collector) error
}

// WatermarkHandler is implemented by operators that react to event time.
// The runtime forwards the watermark downstream after the call.
type WatermarkHandler interface {
	ProcessWatermark(ts int64, out Collector) error
}

// Sink writes records to an external system.
type Sink interface {
	Open(ctx Context) error
	Write(r Record) error
	// Finish is called once at the end of input; flush everything.
	Finish() error
	Close() error
}
