// Package jobmanager is the coordinator daemon's core: it accepts
// TaskManager registrations, marks a TaskManager lost when its heartbeats
// stop, stores submitted jobs (graph, status, history) on disk so a restarted
// JobManager still lists them, spreads each job's subtasks over free slots,
// deploys them, and drives each job to FINISHED, CANCELED or FAILED.
//
// Slot sharing follows Flink's default: a job needs as many slots as its
// largest parallelism, and slot i hosts subtask i of every task vertex.
package jobmanager
