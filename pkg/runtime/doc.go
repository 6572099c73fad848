// Package runtime runs job graphs: it chains operators into tasks
// (BuildPlan), turns a plan into per-subtask deployments (BuildDeployments),
// and runs one subtask (RunTask).
//
// Promises of RunTask:
//   - One goroutine (the caller's) owns the subtask: sources, operators,
//     sinks, watermarks and output buffers. User code needs no locks.
//   - Chained operators call each other directly; between tasks, records
//     travel in frames (docs/formats/frames.md) inside pooled exchange
//     buffers, decoded in place: no allocation per record on that path.
//   - Partitioning: forward, rebalance (round robin), hash (keyBy expression
//     -> key bytes -> key group -> subtask, exactly as pkg/keygroup; the key
//     travels with the record as Record.Key) and broadcast.
//   - A partly filled buffer is sent after TaskEnv.FlushInterval (default
//     100ms); full buffers at once. Waiting for a buffer is backpressure.
//   - Event time: a source vertex's WatermarkStrategy generates periodic
//     bounded-out-of-orderness watermarks and idleness; a task's watermark is
//     the minimum over its live, non-idle input channels and only increases.
//   - Returns nil when the input ended and every record was handed to the
//     downstream consumers, an error wrapping context.Canceled when canceled,
//     and otherwise an error naming the operator, the subtask (1-based, as
//     Flink: "subtask 2/3") and, for record errors, the record's position.
//     Panics in user code become errors.
package runtime
