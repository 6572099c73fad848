// Package checkpoint holds the checkpoint coordinator's decision core: a
// pure state machine (no goroutines, no I/O, no clock) that decides when to
// trigger checkpoints and savepoints, when they expire, complete or abort,
// when the job must fail, and which completed checkpoints to discard. The
// JobManager drives it: it owns the Coordinator on one goroutine, feeds it
// events and executes the actions (RPCs to tasks, metadata and storage
// writes). Storage layout, metadata encoding and restore live elsewhere.
//
// The contract, step by step:
//
//  1. New(Config, tasks, now, Resume) for one run of a job; tasks are every
//     subtask that must acknowledge a checkpoint. After a restart, pass the
//     last checkpoint id used and the retained completed checkpoints.
//  2. Step(EventTick) periodically with the current time: it expires
//     checkpoints older than Config.Timeout and triggers the next periodic
//     one when the interval has passed since the previous trigger, fewer than
//     MaxConcurrent are pending and MinPause has passed since the last one
//     ended. ActionTrigger: tell the source tasks to emit barrier ID.
//  3. Step(EventAck) / Step(EventDecline) as tasks answer. When every task
//     acknowledged (or finished, EventTaskFinished), ActionFinalize: write
//     the metadata from the acks, last, then Step(EventFinalized) with the
//     write's error. ActionComplete: notify the tasks; ActionDiscard: delete
//     checkpoints that fell out of retention (Config.Retain).
//  4. ActionAbort: notify the tasks and discard the checkpoint's state (the
//     acks it lists, and the metadata if it was written). ActionDiscardLate:
//     an acknowledgement came after its checkpoint ended; discard its state.
//  5. ActionFailJob: more than Config.TolerableFailures consecutive counted
//     failures (Reason.Counts). The coordinator stops; restart the job and
//     build a new Coordinator with Resume.
//
// Promises:
//   - Checkpoint ids increase by one per trigger (checkpoints and savepoints
//     share the sequence) and continue after Resume.LastID.
//   - Every triggered checkpoint ends in exactly one ActionComplete or
//     ActionAbort, preceded, for a completion, by one ActionFinalize.
//     Expiry and declines do not apply while its metadata is written.
//   - A completed checkpoint subsumes (aborts) older pending ones; one whose
//     metadata write finishes after a newer checkpoint completed is aborted
//     as subsumed. Savepoints neither subsume nor are subsumed, are never
//     retained or discarded, and their failures never count.
//   - Completions are reported in increasing id order among checkpoints.
//   - At most MaxConcurrent periodic checkpoints pend at once.
//   - On error Step changes nothing and returns no action.
package checkpoint
