package jobmaster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/flowrt/flow/internal/jobmanager/lifecycle"
	"github.com/flowrt/flow/pkg/jobspec"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// This file holds what a restart restores from when checkpoints are
// broken, and the checkpoint history of a job loaded after a JobManager
// restart.
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

// restoreUnreadable handles a subtask's report that it could not read the
// files of checkpoint id, which its deployment restores.
func (c *Checkpoints) restoreUnreadable(id int64, failure string) {
	reason := "a subtask could not read it: " + failure
	switch {
	case c.points[uint64(id)] != nil || c.restore != nil && c.restore.own && c.restore.id == id:
		c.markCorrupt(id, reason)
	case c.initial != nil && c.initial.id == id:
		c.m.log.Warn("the snapshot the job restores from is unreadable", "job", c.m.id, "snapshot", c.initial.dirURL, "reason", failure)
		c.corrupt[-1] = c.initial.dirURL + ": " + reason
		if c.restore == c.initial {
			c.restore = nil
		}
		c.initial = nil
	}
	c.verifiedFor = 0 // choose again before the next attempt
}

// markCorrupt takes a checkpoint of the job's own storage out of the
// restore candidates and the retained set.
func (c *Checkpoints) markCorrupt(id int64, reason string) {
	if _, done := c.corrupt[id]; done {
		return
	}
	c.m.log.Warn("checkpoint unreadable; marked corrupt, recovery falls back to an older one", "job", c.m.id, "checkpoint", id, "reason", reason)
	c.corrupt[id] = reason
	delete(c.points, uint64(id))
	c.retained = slices.DeleteFunc(c.retained, func(x uint64) bool { return x == uint64(id) })
	if info := c.touch(uint64(id)); info != nil {
		info.Status = clusterv1.CheckpointStatus_CHECKPOINT_STATUS_CORRUPT
		info.Failure = reason
	}
	if c.restore != nil && c.restore.own && c.restore.id == id {
		c.restore = nil
	}
}

// restoreCandidate is one restore point to read before a restart.
type restoreCandidate struct {
	point *RestorePoint
	store CompletedStore // nil: the submitted snapshot, not re-read
}

// chooseRestore chooses the restore point of the restart of attempt and
// answers the lifecycle with EventRestoreChosen: at once when there is
// nothing to read, else after reading the candidates in the background.
func (c *Checkpoints) chooseRestore(attempt int32) {
	m := c.m
	chosen := func(reason string, retry bool) {
		m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventRestoreChosen, Time: m.now, Attempt: attempt, Reason: reason, Retry: retry})
	}
	if c.verifiedFor == attempt {
		chosen("", false)
		return
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
		chosen("", false) // nothing to restore: the job starts afresh
		return
	}
	m.goIO(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
		defer cancel()
		point, refused := readCandidates(ctx, cands)
		m.post(result(func(m *Master) {
			c := m.ck
			for id, why := range refused {
				c.markCorrupt(id, why)
			}
			if point == nil && len(refused) == 0 && (len(c.points) > 0 || c.initial != nil) {
				chosen("", true) // the read did not finish: try again
				return
			}
			c.verifiedFor = attempt
			c.restore = point
			if point == nil {
				chosen("no readable checkpoint is left to restore: "+describeRefused(c.corrupt)+
					"; restore by hand from a savepoint (flowctl run --from-savepoint) or resubmit without state", false)
				return
			}
			chosen("", false)
			if len(refused) > 0 {
				// The refused checkpoints completed, so sinks may have
				// committed their output; replaying from an older one
				// produces it again.
				m.lc.SetNote(fmt.Sprintf("restoring checkpoint %d: newer ones are unreadable (%s); output that sinks committed after checkpoint %d may be written again",
					point.id, describeRefused(refused), point.id))
				m.log.Warn("restoring an older checkpoint; output committed after it may be written again", "job", m.id, "restore", point.dirURL, "refused", describeRefused(refused))
			}
		}))
	})
}

// readCandidates reads the candidates, newest first, and returns the first
// that reads cleanly and why each before it was refused. It does I/O.
func readCandidates(ctx context.Context, cands []restoreCandidate) (*RestorePoint, map[int64]string) {
	refused := map[int64]string{}
	for _, cand := range cands {
		if cand.store == nil {
			return cand.point, refused
		}
		p, err := cand.store.Verify(ctx, cand.point)
		if ctx.Err() != nil {
			return nil, refused // closing, or storage too slow: try again at the next pass
		}
		if err != nil {
			refused[cand.point.id] = err.Error()
			continue
		}
		return p, refused
	}
	return nil, refused
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

// recoverHistory rebuilds, after a JobManager restart, the history of a
// stored job from its completed checkpoints in storage (the in-progress
// and failed ones of the previous JobManager are not kept), so `flowctl
// checkpoints` lists them and names the latest for --from-checkpoint.
func (m *Master) recoverHistory() {
	cfg, err := jobspec.CheckpointsOf(m.lc.Details().GetGraph())
	if err != nil || cfg.Interval <= 0 {
		return
	}
	url := cfg.Storage
	if url == "" {
		url = m.cfg.DefaultCheckpointStorage
	}
	if url == "" {
		return
	}
	m.goIO(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, storageTimeout)
		defer cancel()
		store, points, err := HA{Stores: m.cfg.Stores}.open(ctx, url, m.id, m.log)
		if err != nil {
			m.log.Warn("checkpoint history after restart", "job", m.id, "storage", url, "err", err)
			return
		}
		store.Close()
		if len(points) == 0 {
			return
		}
		m.post(result(func(m *Master) { m.ck.recovered(points) }))
	})
}

// recovered adds the completed checkpoints found in storage to the
// history.
func (c *Checkpoints) recovered(points []*RestorePoint) {
	for _, p := range points {
		md, st := p.md, p.md.GetStats()
		id := uint64(p.id)
		if c.byID[id] == nil {
			c.addHistory(&clusterv1.CheckpointInfo{
				Id: p.id, Status: clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, Path: p.dirURL,
				TriggerTimeMs: md.GetTriggerTimeMs(), DurationMs: st.GetDurationMs(), StateSize: st.GetStateSize(),
				UploadedSize: st.GetUploadedSize(), MaxAlignmentMs: st.GetMaxAlignmentMs(),
			})
		}
		if c.points[id] == nil {
			c.points[id] = p
		}
	}
	sort.Slice(c.history, func(a, b int) bool { return c.history[a].GetId() < c.history[b].GetId() })
	if c.restore == nil {
		c.restore = c.points[uint64(points[len(points)-1].id)]
	}
	c.m.log.Info("checkpoint history recovered from storage", "job", c.m.id, "completed", len(points), "latest", c.restore.dirURL)
}
