// Package jobstore keeps the JobManager's job records: the Store
// interface that HA replaces (e.g. by etcd), its file implementation (one
// record per job, written to a temporary file, synced and renamed) and
// the Writer that stores the records the job masters publish from one
// background goroutine, coalesced per job, so that a slow store delays
// only persistence, never a job master or a heartbeat.
package jobstore
