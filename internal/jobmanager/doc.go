// Package jobmanager is the coordinator daemon's core: it accepts
// TaskManager registrations, marks a TaskManager lost when its heartbeats
// stop, stores submitted jobs (graph, status, history) so a restarted
// JobManager still lists them, spreads each job's subtasks over free slots,
// deploys them, drives their checkpoints and brings each job to FINISHED,
// CANCELED or FAILED.
//
// Its parts, one file each:
//
//   - jobmanager.go: the RPC handlers and the job lifecycle (statuses,
//     attempts, restarts, deployment), under jm.mu.
//   - heartbeat.go: the TaskManager registry, under its own lock: a TTL
//     timer per TaskManager reset by heartbeats, slot accounting and the
//     connections. A heartbeat never waits for job work.
//   - persist.go and store.go: job records are written by one background
//     writer off jm.mu, coalesced per job, to a JobStore (files by default).
//   - checkpoints.go: the driver of each job's checkpoint Coordinator
//     (pkg/checkpoint): triggers, metadata, notifications (redelivered
//     until taken), savepoints and stop with savepoint.
//   - recovery.go: the restore point of a restart (the newest readable
//     checkpoint; CORRUPT ones skipped) and deployments to unreachable
//     TaskManagers (rescheduled without a restart attempt).
//   - restart.go, scheduler.go: restart strategies and slot allocation,
//     pure functions.
//   - ready.go, metrics.go: readiness and Prometheus collectors.
//
// Lock order: jm.mu, then the registry's lock; the registry calls back
// (onLost) only after releasing its own. No lock is held across disk or
// network I/O.
//
// Slot sharing follows Flink's default: a job needs as many slots as its
// largest parallelism, and slot i hosts subtask i of every task vertex.
package jobmanager
