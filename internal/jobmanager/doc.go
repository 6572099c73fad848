// Package jobmanager is the coordinator daemon's core: it accepts
// TaskManager registrations, marks a TaskManager lost when its heartbeats
// stop, stores submitted jobs (graph, status, history) so a restarted
// JobManager still lists them, spreads each job's subtasks over free
// slots, and gives each job a job master (package jobmaster) that deploys
// it, drives its checkpoints and brings it to FINISHED, CANCELED or
// FAILED.
//
// Its parts:
//
//   - api.go, taskmanagers.go: the RPC handlers. They route events to the
//     job's master (task states, acknowledgements, cancel and savepoint
//     requests) and read the View it publishes (ListJobs, GetJob,
//     WatchJob, ListCheckpoints). None holds a lock across I/O or runs job
//     logic.
//   - jobmanager.go: Options, the set of job masters (under jm.mu, which
//     guards only that set), the scheduling pass (slots to waiting jobs in
//     submission order) and the reconciliation of what TaskManagers report
//     running.
//   - taskmanagers.go also routes registrations and heartbeats to the
//     registry (package heartbeat), which has its own lock: a heartbeat
//     never waits for job work.
//   - executor.go: the job masters' Executor: RPCs to TaskManagers (each
//     connection carries the fencing token), slots, job records.
//   - ready.go, metrics.go: readiness and Prometheus collectors.
//
// Sub-packages: jobmaster (one job's loop, checkpoint driver, restore),
// lifecycle (the pure lifecycle machine), restart (restart strategies),
// scheduler (slot allocation, pure), heartbeat (the TaskManager registry:
// TTL timer per TaskManager, scaled TTLs, slots, connections), jobstore (the job store and its
// background writer: the records the job masters publish are written
// there, coalesced per job).
//
// Lock order: jm.mu, then the registry's lock; the registry calls back
// (onLost) only after releasing its own; a job master's loop takes no lock
// but the registry's (through the Executor) and its savepoints' progress.
//
// Slot sharing follows Flink's default: a job needs as many slots as its
// largest parallelism, and slot i hosts subtask i of every task vertex.
package jobmanager
