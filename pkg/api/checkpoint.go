package api

// CheckpointListener is implemented by sources, operators and sinks that
// act when a checkpoint they took part in completes or is aborted: a
// two-phase-commit sink commits the data it pre-committed for checkpoint id
// when it completes, and may discard it when it is aborted. The runtime calls
// both on the task goroutine, between records, after every operator of the
// chain has seen the notification's predecessors. A completion notification
// can be lost (a full mailbox, a TaskManager restart): a later completion
// covers every checkpoint up to its id, so commit everything <= id.
type CheckpointListener interface {
	NotifyCheckpointComplete(id int64) error
	NotifyCheckpointAborted(id int64) error
}

// CheckpointedFunction is implemented by operators and sinks that keep
// transactional state outside the state backends (open files, transactions)
// and record what a checkpoint needs in operator state
// (OperatorStateStoreOf(ctx)):
//
//   - SnapshotState(id) runs on the task goroutine at the synchronous part
//     of checkpoint id, before the runtime copies the operator state: flush
//     and pre-commit the data received so far and record it (for example a
//     file sink closes its part file and lists it as pending for id).
//   - InitializeState(restored) runs once after Open and after the runtime
//     restored the operator state, before the first record. restored is true
//     when the task starts from a checkpoint or savepoint: commit the
//     pre-committed data recorded in the restored state (idempotently: it may
//     already be committed) and remove what was written after it (it will be
//     produced again).
type CheckpointedFunction interface {
	SnapshotState(id int64) error
	InitializeState(restored bool) error
}
