// Package runtime runs one subtask of a job graph (RunTask): the chain of
// operators of one task vertex, its input gates and outputs over the
// exchange, its state and its checkpoints. Planning (chaining operators
// into task vertices, parallelism, per-subtask deployments) is package
// pkg/jobgraph.
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
//     and otherwise an error naming the operator, the subtask (numbered
//     from 0, as describe and -o json show it: "subtask 0 of 2") and, for
//     record errors, the record's position.
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
//     splits (api.SplitSource: RestoreSplits) or position (Restore) after
//     Open, output in-flight data emitted and input in-flight data
//     processed first, then InitializeState(true) of every
//     api.CheckpointedFunction. A restore failure fails the task with one
//     line naming the checkpoint and the file.
//   - Source splits: a SplitSource's Splits are stored at every snapshot as
//     its split-list operator state api.SourceSplitsState (no position).
//     After a rescale every new source subtask reads all old subtasks'
//     splits, divides them (api.SplitDivider) when they are fewer than the
//     subtasks, and keeps element k when k mod parallelism is its index, so
//     each split continues in exactly one subtask. Per-subtask positions
//     (sources without splits) restore only at the same parallelism; a
//     rescale fails the restore with an error saying so.
//   - Drain (CheckpointOptions.drain on a savepoint trigger, `flowctl stop
//     --drain`): the source subtask emits api.MaxWatermark through its chain
//     and downstream, then snapshots and emits the barrier, stops calling
//     Next and declines later triggers; when the savepoint completes it
//     finishes (end of partition, downstream tasks finish) and RunTask
//     returns nil; when the savepoint is aborted, or cannot be taken, the
//     task fails (its input already ended: the job must restart from its
//     latest checkpoint). A cancellation while waiting ends it CANCELED.
//   - A consumer whose producer released its partition before the end
//     arrived (ErrPartitionReleased) waits up to 2s for its own
//     cancellation before reporting the lost input: a stopped job's
//     subtasks are canceled one RPC each, in any order.
package runtime
