package jobmanager

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/flowrt/flow/pkg/checkpoint/storage"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// This file holds what a restart restores from when checkpoints are
// broken, and what a deployment does when a TaskManager does not answer.
//
// Restore points. A restart restores the newest retained checkpoint of the
// job's own storage that reads cleanly; before each restart the candidates
// are read again from storage, newest first (their `_metadata` and the
// presence of every file it names), and each one refused is marked CORRUPT
// with its reason. A subtask that cannot read the state it was deployed
// with (a missing or corrupt file) reports the checkpoint's id, which is
// marked CORRUPT the same way. A CORRUPT checkpoint leaves the retained set
// (so retention never deletes a good checkpoint because a newer one is
// broken) and its files stay for inspection. The snapshot the job was
// submitted with is the last candidate. A job whose candidates are all
// refused fails, listing each and why.

// verifyTimeout bounds reading the restore candidates before a restart.
const verifyTimeout = time.Minute

// restoreUnreadableLocked handles a subtask's report that it could not read
// the files of checkpoint id, which its deployment restores.
func (jm *JobManager) restoreUnreadableLocked(j *job, id int64, failure string) {
	c := j.ck
	if c == nil {
		return
	}
	reason := "a subtask could not read it: " + failure
	switch {
	case c.points[uint64(id)] != nil || c.restore != nil && c.restore.own && c.restore.id == id:
		jm.markCorruptLocked(j, id, reason)
	case c.initial != nil && c.initial.id == id:
		jm.log.Warn("the snapshot the job restores from is unreadable", "job", j.d.GetSummary().GetJobId(), "snapshot", c.initial.dirURL, "reason", failure)
		c.corrupt[-1] = c.initial.dirURL + ": " + reason
		if c.restore == c.initial {
			c.restore = nil
		}
		c.initial = nil
	}
	c.verifiedFor = 0 // choose again before the next attempt
}

// markCorruptLocked takes a checkpoint of the job's own storage out of the
// restore candidates and the retained set.
func (jm *JobManager) markCorruptLocked(j *job, id int64, reason string) {
	c := j.ck
	if _, done := c.corrupt[id]; done {
		return
	}
	jm.log.Warn("checkpoint unreadable; marked corrupt, recovery falls back to an older one", "job", j.d.GetSummary().GetJobId(), "checkpoint", id, "reason", reason)
	c.corrupt[id] = reason
	delete(c.points, uint64(id))
	c.retained = slices.DeleteFunc(c.retained, func(x uint64) bool { return x == uint64(id) })
	if info := c.byID[uint64(id)]; info != nil {
		info.Status = clusterv1.CheckpointStatus_CHECKPOINT_STATUS_CORRUPT
		info.Failure = reason
	}
	if c.restore != nil && c.restore.own && c.restore.id == id {
		c.restore = nil
	}
}

// restoreCandidate is one restore point to read before a restart.
type restoreCandidate struct {
	point *restorePoint
	store *storage.JobStore // nil: the submitted snapshot, not re-read
}

// needsRestoreChoiceLocked reports whether the restart of a RESTARTING job
// must first choose its restore point; it starts the choice in the
// background when it is not under way yet.
func (jm *JobManager) needsRestoreChoiceLocked(j *job) bool {
	c := j.ck
	attempt := j.d.GetSummary().GetAttempt()
	if c == nil || c.verifiedFor == attempt {
		return false
	}
	var cands []restoreCandidate
	for _, id := range slices.Backward(slices.Sorted(maps.Keys(c.points))) {
		cands = append(cands, restoreCandidate{point: c.points[id], store: c.store})
	}
	if c.initial != nil {
		cands = append(cands, restoreCandidate{point: c.initial})
	}
	if len(cands) == 0 && len(c.corrupt) == 0 {
		c.verifiedFor = attempt
		return false // nothing to restore: the job starts afresh
	}
	if !c.verifying {
		c.verifying = true
		jobID := j.d.GetSummary().GetJobId()
		jm.wg.Add(1)
		go func() {
			defer jm.wg.Done()
			chosen, refused := jm.chooseRestore(cands)
			jm.mu.Lock()
			defer jm.mu.Unlock()
			jm.applyRestoreChoiceLocked(jobID, attempt, c, chosen, refused)
		}()
	}
	return true
}

// chooseRestore reads the candidates, newest first, and returns the first
// that reads cleanly and why each before it was refused. It does I/O: call
// without jm.mu.
func (jm *JobManager) chooseRestore(cands []restoreCandidate) (*restorePoint, map[int64]string) {
	ctx, cancel := context.WithTimeout(jm.base, verifyTimeout)
	defer cancel()
	refused := map[int64]string{}
	for _, cand := range cands {
		p := cand.point
		if cand.store == nil {
			return p, refused
		}
		md, err := cand.store.Storage().ReadMetadata(ctx, p.location)
		if err == nil {
			err = storage.VerifyFiles(ctx, cand.store.Storage(), md)
		}
		if ctx.Err() != nil {
			return nil, refused // closing, or storage too slow: try again at the next pass
		}
		if err != nil {
			refused[p.id] = err.Error()
			continue
		}
		q := *p
		q.md = md
		return &q, refused
	}
	return nil, refused
}

// applyRestoreChoiceLocked records the outcome of chooseRestore for the
// restart of attempt, or fails the job when nothing readable is left.
func (jm *JobManager) applyRestoreChoiceLocked(jobID string, attempt int32, c *jobCheckpoints, chosen *restorePoint, refused map[int64]string) {
	c.verifying = false
	j := jm.jobs[jobID]
	if jm.closed || j == nil || j.ck != c || j.d.GetSummary().GetAttempt() != attempt ||
		j.d.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RESTARTING {
		return
	}
	for id, why := range refused {
		jm.markCorruptLocked(j, id, why)
	}
	if chosen == nil && len(refused) == 0 && (len(c.points) > 0 || c.initial != nil) {
		jm.wake() // the read did not finish: try again
		return
	}
	c.verifiedFor = attempt
	c.restore = chosen
	if chosen == nil {
		msg := "no readable checkpoint is left to restore: " + describeRefused(c.corrupt) +
			"; restore by hand from a savepoint (flowctl run --from-savepoint) or resubmit without state"
		j.d.Summary.Failure = msg
		jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_FAILED, msg)
		jm.persistLocked(j)
		jm.wake()
		return
	}
	if len(refused) > 0 {
		// The refused checkpoints completed, so sinks may have committed
		// their output; replaying from an older one produces it again.
		j.note = fmt.Sprintf("restoring checkpoint %d: newer ones are unreadable (%s); output that sinks committed after checkpoint %d may be written again",
			chosen.id, describeRefused(refused), chosen.id)
		jm.notifyLocked(j)
		jm.log.Warn("restoring an older checkpoint; output committed after it may be written again", "job", jobID, "restore", chosen.dirURL, "refused", describeRefused(refused))
	}
	jm.wake()
}

// describeRefused lists refused checkpoints, newest first.
func describeRefused(m map[int64]string) string {
	ids := slices.Sorted(maps.Keys(m))
	var parts []string
	for _, id := range slices.Backward(ids) {
		if id < 0 {
			parts = append(parts, m[id]) // the submitted snapshot
			continue
		}
		parts = append(parts, fmt.Sprintf("checkpoint %d: %s", id, m[id]))
	}
	return strings.Join(parts, "; ")
}

// deployUnreachable handles a deployment that failed with Unavailable: the
// TaskManager is suspected at once (marked lost; a live one re-registers
// on its next heartbeat) and the attempt is scheduled again on the others
// without using a restart attempt.
func (jm *JobManager) deployUnreachable(tmID string, id *clusterv1.TaskID, reason string) {
	jm.mu.Lock()
	if j := jm.jobs[id.GetJobId()]; j != nil && j.d.GetSummary().GetAttempt() == id.GetAttempt() && !isTerminal(j.d.GetSummary().GetStatus()) {
		j.redeploy = id.GetAttempt()
	}
	jm.mu.Unlock()
	jm.markUnreachable(tmID, reason)
}
