// Package ha holds the JobManager's seams for high availability: what a
// standby JobManager must find again when it takes over, behind
// interfaces that an etcd (or other consensus store) implementation can
// replace without touching the job master.
//
//   - CheckpointIDCounter: the highest checkpoint id issued per job. Ids
//     are recorded before any trigger leaves the JobManager, so a
//     JobManager that restarts (or a new leader) never issues an id twice,
//     even for checkpoints that failed or were in flight.
//   - LeaderElection: who leads, and the leader epoch, a number that grows
//     with every leadership term. The epoch travels on every call to a
//     TaskManager (internal/fencing) so TaskManagers refuse an old leader.
//   - The completed-checkpoint store (jobmaster.CompletedStore) lists the
//     checkpoints a job may restore.
//
// The file-backed implementations keep everything in the data dir:
//
//	flow.lock                    flock(2) held by the leader (package datadir)
//	ha/leader-epoch              the last epoch granted (decimal)
//	ha/leader                    the leader's id, epoch, address, pid (JSON)
//	ha/checkpoint-ids/<job-id>   the highest checkpoint id issued (decimal)
//
// Files are replaced atomically (temporary file, fsync, rename, fsync of
// the directory); a file that does not parse is reported with its path
// and what to do, never guessed at.
package ha
