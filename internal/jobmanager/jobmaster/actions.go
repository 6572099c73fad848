package jobmaster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/internal/jobmanager/lifecycle"
	"github.com/flowrt/flow/pkg/checkpoint"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// exec carries out one action of the coordinator.
func (c *Checkpoints) exec(a checkpoint.Action) {
	m := c.m
	switch a.Type {
	case checkpoint.ActionTrigger:
		c.trigger(a)
	case checkpoint.ActionFinalize:
		c.finalize(a)
	case checkpoint.ActionComplete:
		c.complete(a)
	case checkpoint.ActionAbort:
		if info := c.touch(a.ID); info != nil {
			info.Status = clusterv1.CheckpointStatus_CHECKPOINT_STATUS_FAILED
			if info.Failure == "" {
				info.Failure = a.Reason.String()
			} else {
				info.Failure = a.Reason.String() + ": " + info.Failure
			}
			info.DurationMs = m.now.Sub(time.UnixMilli(info.GetTriggerTimeMs())).Milliseconds()
		}
		c.stats.aborted(a.Reason)
		detail := ""
		if info := c.touch(a.ID); info != nil {
			detail = info.GetFailure()
		}
		// A failure is WARN; an abort that is not one (subsumed, a task not
		// ready yet, input finished) DEBUG.
		level := slog.LevelDebug
		if a.Reason.Counts() || a.Savepoint {
			level = slog.LevelWarn
		}
		m.log.Log(context.Background(), level, "checkpoint aborted", "job", m.id, "id", a.ID, "savepoint", a.Savepoint, "reason", a.Reason, "detail", detail, "consecutive_failures", a.Failures)
		c.notify(int64(a.ID), false)
		if sp := c.savepoints[a.ID]; a.Savepoint && sp != nil {
			detail := a.Reason.String()
			if info := c.byID[a.ID]; info != nil {
				detail = info.GetFailure()
			}
			c.failSavepoint(sp, fmt.Errorf("savepoint %d failed: %s", a.ID, detail))
			return
		}
		c.abortFiles(a.ID, a.Acks)
	case checkpoint.ActionDiscard:
		if info := c.touch(a.ID); info != nil {
			info.Status = clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED
		}
		delete(c.points, a.ID)
		store, id := c.store, int64(a.ID)
		m.goIO(func(ctx context.Context) {
			ctx, cancel := context.WithTimeout(ctx, storageTimeout)
			defer cancel()
			if err := store.Discard(ctx, id); err != nil {
				m.log.Warn("discard checkpoint", "job", m.id, "id", id, "err", err)
			}
		})
	case checkpoint.ActionDiscardLate:
		c.discardFiles(a.ID, []checkpoint.Ack{{Task: a.Task, Handle: a.Handle}}, true)
	case checkpoint.ActionFailJob:
		reason := fmt.Sprintf("%d consecutive checkpoints failed (tolerableFailures is %d)", a.Failures, c.cfg.TolerableFailures)
		m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventFail, Time: m.now, Reason: reason})
	}
}

func (c *Checkpoints) trigger(a checkpoint.Action) {
	m := c.m
	c.lastID = max(c.lastID, a.ID)
	info := &clusterv1.CheckpointInfo{
		Id: int64(a.ID), Status: clusterv1.CheckpointStatus_CHECKPOINT_STATUS_IN_PROGRESS,
		TriggerTimeMs: a.Time.UnixMilli(), Savepoint: a.Savepoint, Attempt: m.lc.Attempt(),
	}
	opts := &clusterv1.CheckpointOptions{
		Savepoint: a.Savepoint, Unaligned: c.cfg.Unaligned && !a.Savepoint,
		AlignedTimeoutMs: c.cfg.AlignedTimeout.Milliseconds(), Incremental: c.cfg.Incremental && !a.Savepoint,
	}
	if a.Savepoint {
		sp := c.nextSavepoint
		if sp == nil {
			m.log.Error("savepoint triggered without a request", "job", m.id, "id", a.ID)
			return
		}
		sp.id, sp.total = a.ID, m.plan.TotalSubtasks()
		c.savepoints[a.ID] = sp
		info.Path = sp.dirURL
		opts.StorageBase, opts.Drain, opts.Stop = sp.dirURL, sp.drain, sp.stop && !sp.drain
	} else {
		base, dir, url := c.store.Target(int64(a.ID))
		info.Path = url
		opts.StorageBase, opts.Location = base, dir
	}
	c.addHistory(info)
	c.triggerSources(a, opts, c.reserve(a.ID))
}

// finalize writes the `_metadata` of a checkpoint every task acknowledged
// (for a savepoint, after checking that every file it names exists).
func (c *Checkpoints) finalize(a checkpoint.Action) {
	m := c.m
	md, err := Metadata(m.id, m.lc.Details().GetGraph(), a, m.now)
	if err != nil {
		m.log.Warn("checkpoint metadata", "job", m.id, "id", a.ID, "err", err)
		c.finalizeFailed(a.ID, err)
		c.step(checkpoint.Event{Type: checkpoint.EventFinalized, Time: m.now, ID: a.ID, Err: err})
		return
	}
	if info := c.touch(a.ID); info != nil {
		info.StateSize, info.UploadedSize, info.MaxAlignmentMs = md.Stats.StateSize, md.Stats.UploadedSize, md.Stats.MaxAlignmentMs
	}
	gen, id := c.gen, a.ID
	if sp := c.savepoints[a.ID]; a.Savepoint && sp != nil {
		m.goIO(func(ctx context.Context) {
			ctx, cancel := context.WithTimeout(ctx, storageTimeout)
			err := sp.writeMetadata(ctx, md)
			cancel()
			m.post(result(func(m *Master) {
				c := m.ck
				if c.gen == gen && c.coord != nil {
					c.finalizeFailed(id, err)
					c.step(checkpoint.Event{Type: checkpoint.EventFinalized, Time: m.now, ID: id, Err: err})
					return
				}
				// Every task acknowledged, then the attempt ended (e.g. a
				// bounded job finished): the savepoint stands on its own.
				if err != nil {
					sp.finish(fmt.Errorf("savepoint %d: write metadata: %w", id, err))
				} else {
					sp.finish(nil)
				}
				sp.storage.Close()
			}))
		})
		return
	}
	store := c.store
	m.goIO(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, storageTimeout)
		p, err := store.Complete(ctx, md)
		cancel()
		m.post(result(func(m *Master) {
			c := m.ck
			if err == nil {
				c.restore = p
				c.points[id] = p
			} else {
				m.log.Warn("checkpoint could not be completed", "job", m.id, "id", id, "err", err)
			}
			c.finalizeFailed(id, err)
			if c.gen == gen {
				c.step(checkpoint.Event{Type: checkpoint.EventFinalized, Time: m.now, ID: id, Err: err})
			}
		}))
	})
}

func (c *Checkpoints) complete(a checkpoint.Action) {
	m := c.m
	info := c.touch(a.ID)
	if info != nil {
		info.Status = clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED
		info.DurationMs = a.Time.Sub(a.TriggerTime).Milliseconds()
	}
	c.stats.completed(a, info)
	if c.coord != nil {
		c.retained = c.coord.Retained()
	}
	// Routine completions are DEBUG; a savepoint is INFO, and a checkpoint
	// that took longer than its interval (the next one had to wait) WARN.
	dur := a.Time.Sub(a.TriggerTime)
	level := slog.LevelDebug
	switch {
	case a.Savepoint:
		level = slog.LevelInfo
	case c.cfg.Interval > 0 && dur > c.cfg.Interval:
		level = slog.LevelWarn
	}
	m.log.Log(context.Background(), level, "checkpoint completed", "job", m.id, "id", a.ID, "savepoint", a.Savepoint, "duration", dur)
	c.notify(int64(a.ID), true)
	sp := c.savepoints[a.ID]
	if !a.Savepoint || sp == nil {
		return
	}
	sp.finish(nil)
	sp.storage.Close()
	attempt := m.lc.Attempt()
	switch {
	case sp.stop && sp.drain:
		// Drained sources ended their input at the savepoint: the tasks
		// finish by themselves once they hear of its completion (sent
		// above), committing their last output. Cancel only if they do not.
		m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventStopping, Time: m.now, Path: sp.dirURL})
		m.drainAt, m.drainAttempt, m.drainPath = m.now.Add(m.cfg.DrainGrace), attempt, sp.dirURL
	case sp.stop:
		// The sources emit nothing after the savepoint: once every subtask
		// committed it, cancel them.
		m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventStopping, Time: m.now, Path: sp.dirURL})
		c.stopAfterCommit(int64(a.ID), sp.dirURL)
	}
}

// attemptTaskManagers lists the TaskManagers running subtasks of the
// job's current attempt.
func (c *Checkpoints) attemptTaskManagers() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range c.m.lc.Details().GetTasks() {
		for _, s := range t.GetSubtasks() {
			if tm := s.GetTaskManagerId(); tm != "" && !seen[tm] && c.m.exec.Reachable(tm) {
				seen[tm] = true
				out = append(out, tm)
			}
		}
	}
	return out
}

// notify tells every TaskManager running the current attempt that a
// checkpoint completed or was aborted. Each notification is redelivered
// until the TaskManager took it (see deliver).
func (c *Checkpoints) notify(id int64, completed bool) {
	m := c.m
	req := &clusterv1.NotifyCheckpointRequest{JobId: m.id, Attempt: m.lc.Attempt(), CheckpointId: id, Completed: completed}
	for _, tm := range c.attemptTaskManagers() {
		m.goIO(func(ctx context.Context) { _ = m.deliver(ctx, tm, req) })
	}
}

// stopAfterCommit ends a job stopped with savepoint id once every
// TaskManager reported that its subtasks processed the savepoint's
// completion (so every sink committed it), or after the drain grace.
func (c *Checkpoints) stopAfterCommit(id int64, path string) {
	m := c.m
	attempt := m.lc.Attempt()
	req := &clusterv1.NotifyCheckpointRequest{JobId: m.id, Attempt: attempt, CheckpointId: id, Completed: true, AwaitProcessed: true}
	tms := c.attemptTaskManagers()
	m.goIO(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, m.cfg.DrainGrace)
		defer cancel()
		var wg sync.WaitGroup
		for _, tm := range tms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.deliver(ctx, tm, req); err != nil {
					m.log.Warn("stop with savepoint: a TaskManager did not confirm the commit", "job", m.id, "taskmanager", tm, "savepoint", id, "err", err)
				}
			}()
		}
		wg.Wait()
		m.post(result(func(m *Master) {
			m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventStop, Time: m.now, Attempt: attempt, Path: path})
		}))
	})
}

// deliver sends a checkpoint notification to one TaskManager until it
// answers, retrying with backoff. It gives up only when the attempt is
// over, the TaskManager left (its subtasks are gone with it), ctx ends or
// the master closes: a completion that reaches no sink would leave that
// sink's output uncommitted. It runs in the master's I/O goroutines.
func (m *Master) deliver(ctx context.Context, tm string, req *clusterv1.NotifyCheckpointRequest) error {
	delay := 50 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, m.cfg.RPCTimeout)
		if req.GetAwaitProcessed() {
			cctx, cancel = context.WithCancel(ctx) // bounded by ctx alone
		}
		err := m.exec.NotifyCheckpoint(cctx, tm, req)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		m.log.Debug("notify checkpoint; retrying", "job", req.GetJobId(), "taskmanager", tm, "id", req.GetCheckpointId(), "err", err)
		if !m.attemptLive(req.GetAttempt()) || !m.exec.Reachable(tm) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// abortFiles deletes what an unfinished checkpoint wrote.
func (c *Checkpoints) abortFiles(id uint64, acks []checkpoint.Ack) { c.discardFiles(id, acks, false) }

// discardFiles deletes the files of acks (and, unless late, the
// checkpoint's directory); late acks of a completed checkpoint keep what
// the checkpoint references.
func (c *Checkpoints) discardFiles(id uint64, acks []checkpoint.Ack, late bool) {
	if c.store == nil {
		return
	}
	var states []*checkpointv1.SubtaskState
	for _, a := range acks {
		req := &clusterv1.AcknowledgeCheckpointRequest{}
		if proto.Unmarshal(a.Handle, req) == nil {
			for _, st := range req.GetOperators() {
				states = append(states, st)
			}
		}
	}
	m, store := c.m, c.store
	m.goIO(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, storageTimeout)
		defer cancel()
		var err error
		if late {
			err = store.DiscardLate(ctx, int64(id), states...)
		} else {
			err = store.Abort(ctx, int64(id), states...)
		}
		if err != nil {
			m.log.Debug("delete checkpoint files", "job", m.id, "id", id, "late", late, "err", err)
		}
	})
}

// cleanup deletes a job's checkpoints once it FINISHED or was CANCELED,
// unless checkpoints.retainOnCancel keeps them (externalized checkpoints).
// A FAILED job keeps them: they are how it is recovered by hand (flowctl
// run --from-checkpoint). Savepoints live elsewhere and are never touched.
func (c *Checkpoints) cleanup() {
	if c.store == nil || c.cfg.RetainOnCancel {
		return
	}
	m, store, ids := c.m, c.store, c.ids
	c.restore = nil
	m.goIO(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if n, err := store.DeleteAll(ctx); err != nil {
			m.log.Warn("delete checkpoints of an ended job", "job", m.id, "err", err)
		} else {
			m.log.Info("deleted the checkpoints of an ended job", "job", m.id, "files", n)
			if ids != nil {
				if err := ids.Remove(ctx, m.id); err != nil {
					m.log.Warn("remove the checkpoint id counter of an ended job", "job", m.id, "err", err)
				}
			}
		}
	})
}
