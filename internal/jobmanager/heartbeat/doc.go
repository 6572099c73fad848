// Package heartbeat is the JobManager's TaskManager registry, as nomad's
// heartbeat.go: registration, a TTL timer per TaskManager that each
// heartbeat resets (when it fires, the TaskManager is lost), heartbeat
// intervals and TTLs scaled with the cluster's size, slot accounting, the
// connection to each TaskManager and what each last reported running.
//
// It has its own lock and never calls out while holding it (onLost runs
// after it is released), so a heartbeat never waits for job work.
package heartbeat
