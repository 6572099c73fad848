// Package lifecycle is the pure state machine of one job's lifecycle:
// its status (CREATED, RUNNING, FAILING, RESTARTING, CANCELING and the
// terminal FINISHED, CANCELED, FAILED), its attempts, the states of its
// subtasks and the restart decisions of its restart strategy
// (internal/jobmanager/restart).
//
// Like raft's raft.go (and pkg/checkpoint's Coordinator) it does no I/O,
// starts no goroutines and never reads the clock:
//
//  1. The job master (internal/jobmanager/jobmaster) feeds it one Event at
//     a time with Machine.Step: a slot grant, a subtask's state report, a
//     lost TaskManager, a cancel or stop request, a tick, each carrying
//     its own time.
//  2. Step changes the job's record (Details) and returns Actions in the
//     order they must be carried out: deploy to slots, cancel subtasks,
//     start or stop the checkpoint coordinator, release slots, persist,
//     choose a restore point, tick again at a restart time.
//  3. Results of those actions come back as events (a subtask that cannot
//     be reached is reported CANCELED, a chosen restore point is
//     EventRestoreChosen).
//
// Promises: a report of another attempt, of another TaskManager than the
// subtask's, or about a subtask already ended changes nothing; a job
// reaches a terminal status only when every subtask is terminal (or it
// never got slots); the restart strategy is consulted once per failed
// attempt, and a deployment that found a TaskManager unreachable is
// retried without using a restart attempt.
//
// testdata/*.txt are scripted scenarios (see TestScripts).
package lifecycle
