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
//
// Checkpoints (docs/checkpointing.md), when TaskEnv.Control and
// TaskEnv.Checkpoints are set:
//   - A source subtask handles TriggerCheckpoint between Source.Next calls:
//     it snapshots its chain synchronously, emits the barrier on every
//     output subpartition after the records before it, and uploads and
//     acknowledges in the background. A task with inputs drives
//     pkg/barrier with the barriers, cancellation markers, buffers and ends
//     of its input channels and executes its actions (block/unblock,
//     snapshot, forward, capture in-flight data, abort = decline + marker).
//   - One Acknowledge per subtask per checkpoint, with the state of every
//     operator of the chain by uid; a checkpoint the subtask cannot take is
//     declined with a reason. Upload goroutines touch only immutable
//     snapshot data and storage, and are waited for (canceled on failure or
//     cancellation) before RunTask returns.
//   - NotifyCheckpoint reaches the keyed snapshotters (incremental Pebble
//     bookkeeping) and every api.CheckpointListener of the chain.
//   - With TaskDeployment.restore, the subtask starts from the snapshot:
//     operator state (redistributed after rescaling) before Open, keyed
//     state of its key-group range when the operator opens it, the source
//     position after Open, output in-flight data emitted and input
//     in-flight data processed first, then InitializeState(true) of every
//     api.CheckpointedFunction. A restore failure fails the task with one
//     line naming the checkpoint and the file.
package runtime
