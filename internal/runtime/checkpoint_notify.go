package runtime

import (
	"fmt"
	"slices"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/barrier"
)

// This file holds checkpoint completions and aborts: forwarded to the
// snapshotters and to the functions that listen, and awaited at the end.

// ---- notifications ----

// notifyCheckpoint forwards a completion or abort to the keyed
// snapshotters and to every function of the chain that listens.
func (t *task) notifyCheckpoint(m NotifyCheckpoint) {
	if m.Completed {
		if m.ID <= t.ck.lastCompleted {
			return
		}
		t.ck.lastCompleted = m.ID
		t.ck.completed = append(t.ck.completed, m.ID)
	}
	if t.stopID != 0 && !m.Completed && m.ID == t.stopID {
		t.stopID = 0 // the stop failed: the job goes on
	}
	if t.drainID != 0 && !t.drained {
		switch {
		case m.Completed && m.ID >= t.drainID:
			t.drained = true // runSource finishes the task
		case !m.Completed && m.ID == t.drainID:
			t.fail(fmt.Errorf("task %s (subtask %d of %d): stop --drain: savepoint %d was aborted after the source ended its input (the task fails so that the job restarts from its latest checkpoint)",
				t.d.GetId().GetTask(), t.subtask, t.parallelism, m.ID))
			return
		}
	}
	for _, k := range t.ck.keyed {
		if m.Completed {
			k.NotifyComplete(m.ID)
		} else {
			k.NotifyAborted(m.ID)
		}
	}
	if !m.Completed && t.ck.machine != nil && t.machinePending(m.ID) {
		t.stepMachine(barrier.Event{Type: barrier.EventAbort, ID: uint64(m.ID), Time: time.Now()})
	}
	for _, vi := range t.vertices {
		l, ok := t.userFunction(vi).(api.CheckpointListener)
		if !ok {
			continue
		}
		t.callNotify(vi, l, m)
		if t.err != nil {
			return
		}
	}
	if m.Completed {
		t.ck.awaiting = slices.DeleteFunc(t.ck.awaiting, func(id int64) bool { return id <= m.ID })
		if t.env.Notifications != nil {
			t.env.Notifications.MarkProcessed(m.ID)
		}
	} else {
		t.ck.awaiting = slices.DeleteFunc(t.ck.awaiting, func(id int64) bool { return id == m.ID })
	}
	t.rememberAbort(m)
}

// rememberAbort keeps the ids of aborted checkpoints above the last
// completed one (see checkpointer.aborted).
func (t *task) rememberAbort(m NotifyCheckpoint) {
	last := t.ck.lastCompleted
	t.ck.aborted = slices.DeleteFunc(t.ck.aborted, func(id int64) bool { return id <= last })
	if m.Completed || m.ID <= last || slices.Contains(t.ck.aborted, m.ID) {
		return
	}
	if len(t.ck.aborted) == maxPendingAborts {
		t.ck.aborted = t.ck.aborted[1:]
	}
	t.ck.aborted = append(t.ck.aborted, m.ID)
}

func (t *task) callNotify(vi *vertexInfo, l api.CheckpointListener, m NotifyCheckpoint) {
	defer t.recoverUser(vi)
	var err error
	what := "complete"
	if m.Completed {
		err = l.NotifyCheckpointComplete(m.ID)
	} else {
		what = "aborted"
		err = l.NotifyCheckpointAborted(m.ID)
	}
	if err != nil {
		t.fail(fmt.Errorf("%s: checkpoint %d %s: %w", t.opName(vi), m.ID, what, err))
	}
}

// finalNotifyTimeout bounds how long a finishing task waits to hear how the
// checkpoints it uploaded ended.
const finalNotifyTimeout = 2 * time.Minute

// awaitNotifications keeps a finishing task alive until it heard whether
// each checkpoint it uploaded completed or was aborted, so that its
// two-phase-commit functions commit (or abort) their last transactions
// before they close. Only tasks with env.Notifications wait (the JobManager
// redelivers notifications until they arrive).
func (t *task) awaitNotifications() error {
	if t.env.Notifications == nil || t.ck == nil || len(t.ck.awaiting) == 0 {
		return t.err
	}
	limit := time.NewTimer(finalNotifyTimeout)
	defer limit.Stop()
	for len(t.ck.awaiting) > 0 && t.err == nil {
		select {
		case <-t.ctx.Done():
			return t.ctx.Err()
		case <-limit.C:
			t.log.Warn("finished without hearing how its last checkpoints ended", "checkpoints", t.ck.awaiting, "waited", finalNotifyTimeout)
			return t.err
		case <-t.notifyC:
			t.takeNotifications()
		case m := <-t.env.Control:
			switch m := m.(type) {
			case TriggerCheckpoint:
				t.decline(m.ID, "task-not-ready: the subtask is finishing")
			case NotifyCheckpoint:
				t.notifyCheckpoint(m)
			}
		}
	}
	return t.err
}

// declineRemaining declines the triggers left in the mailbox of a task
// that is finishing.
func (t *task) declineRemaining() {
	if t.notifyC != nil {
		t.takeNotifications()
	}
	if t.env.Control == nil {
		return
	}
	for {
		select {
		case m := <-t.env.Control:
			switch m := m.(type) {
			case TriggerCheckpoint:
				t.decline(m.ID, "task-not-ready: the subtask is finishing")
			case NotifyCheckpoint:
				t.notifyCheckpoint(m)
			}
		default:
			return
		}
	}
}
