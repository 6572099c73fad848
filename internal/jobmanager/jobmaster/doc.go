// Package jobmaster is the master of one job: one goroutine that owns the
// job's lifecycle machine (internal/jobmanager/lifecycle), its checkpoint
// Coordinator (pkg/checkpoint) and its deployments, as raft's node.go owns
// raft.go.
//
// The loop (master.go) selects over
//
//   - events from outside, sent by the Master's methods: subtask state
//     reports, checkpoint acknowledgements and declines, a lost
//     TaskManager, a slot offer from the scheduler, cancel and savepoint
//     requests; each carries the time it arrived;
//   - the results of the master's own I/O, as events;
//   - a ticker, whose time drives restart delays, the drain grace of a
//     stop with savepoint and the coordinator's triggers and timeouts (a
//     job that ended disables it by setting its channel to nil).
//
// The pure machines never read the clock: they get the event's time. All
// I/O goes out through the Executor (deploy, cancel, trigger, notify, job
// records) or the CompletedStore (metadata writes, deletions, restore
// reads), from goroutines the master tracks; Close cancels them and waits.
// Results that belong to an earlier attempt or coordinator are dropped.
//
// After each batch of events the master publishes a View: an immutable
// snapshot of the job (record, note, checkpoint history, whether it waits
// for slots), swapped atomically. Readers (RPC handlers, metrics, the
// scheduler, the REST API to come) never ask the loop. Callers that need
// an answer (cancel, savepoint, a task state report) get it after the
// view that shows its effect was published.
//
// Files: master.go (loop, view), events.go (inputs, lifecycle actions),
// deploy.go (deployments, cancellation), checkpoints.go and actions.go
// (the checkpoint driver), savepoint.go, restore.go (restore choice,
// history after a JobManager restart), metadata.go (`_metadata` assembly,
// restore planning), store.go (the completed-checkpoint store),
// executor.go.
package jobmaster
