// Package barrier decides how one task handles checkpoint barriers. It is a
// pure state machine: no goroutines, no I/O, no clock. The driver (the task's
// mailbox loop, which owns the Machine) feeds it events and executes the
// actions it returns.
//
// The contract, step by step:
//
//  1. Build a Machine with New(Config{Channels, Mode, AlignedTimeout}).
//     Channels is the number of input channels; zero makes a source task.
//  2. For every in-band event read from input channel i, in channel order,
//     call Step with EventBarrier, EventRecord (one record or one buffer),
//     EventEnd or EventCancel and Channel i. Barrier and end events carry the
//     time they were read. Call Step with EventTick periodically (only needed
//     for ModeAligned with an AlignedTimeout), EventAbort when a checkpoint is
//     aborted from outside, and, on a source task, EventTrigger when the
//     coordinator asks for a checkpoint.
//  3. Execute the returned actions in order before reading further input:
//     ActionBlock / ActionUnblockAll (stop / resume reading channels),
//     ActionStartSnapshot (the synchronous part of the snapshot),
//     ActionForwardBarrier (emit the barrier downstream), ActionCaptureStart /
//     ActionCapture / ActionCaptureStop (the in-flight data of an unaligned
//     snapshot: the records read on channel i after the snapshot started and
//     before channel i's barrier), ActionAlignmentDone (alignment timing for
//     metrics; for an unaligned snapshot, its in-flight data is complete) and
//     ActionAbort (decline to the coordinator and forward a cancellation
//     marker). The returned slice is reused by the next Step.
//  4. An error from Step means the driver or an upstream task broke the
//     protocol (a read from a blocked or ended channel, a duplicate barrier,
//     an unknown channel): report it and fail the task. The state is
//     unchanged and no action is returned.
//
// Promises:
//   - A channel is blocked only while an aligned (exactly-once) checkpoint is
//     pending and its barrier arrived on that channel; it is unblocked when
//     that checkpoint completes, switches to unaligned, or is aborted.
//   - Every checkpoint whose first barrier was accepted ends in exactly one of
//     ActionAlignmentDone (completed) or ActionAbort, unless it is still
//     pending. ActionStartSnapshot and ActionForwardBarrier happen once per
//     checkpoint: aligned and at-least-once when the last barrier arrives,
//     unaligned on the first barrier (or at the aligned timeout).
//   - An ended channel counts as aligned for every pending checkpoint.
//   - In ModeAligned and ModeUnaligned at most one checkpoint is pending: a
//     barrier (or cancellation, or abort) of a newer checkpoint aborts the
//     pending one (ReasonSubsumed); barriers of older checkpoints are ignored.
//     In ModeAtLeastOnce up to MaxPendingAtLeastOnce checkpoints are pending;
//     when one completes, older pending ones are subsumed.
//   - Duplicate barriers are detected for pending checkpoints and for the most
//     recently finished one.
//   - Step does not allocate for EventRecord.
package barrier
