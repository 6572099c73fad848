package jobmaster

import (
	"context"
	"fmt"
	"time"

	"github.com/flowrt/flow/internal/jobmanager/lifecycle"
	"github.com/flowrt/flow/pkg/checkpoint"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// The events of a job master's loop. Those from outside come through the
// methods below; the others are the results of the master's own I/O.
type (
	taskStateEvent struct {
		at    time.Time
		req   *clusterv1.UpdateTaskStateRequest
		reply chan struct{}
	}
	ackEvent struct {
		at     time.Time
		req    *clusterv1.AcknowledgeCheckpointRequest
		handle []byte
		reply  chan struct{}
	}
	declineEvent struct {
		at    time.Time
		req   *clusterv1.DeclineCheckpointRequest
		reply chan struct{}
	}
	taskManagerLostEvent struct {
		at         time.Time
		tm, reason string
	}
	slotsEvent struct {
		at    time.Time
		slots []string
	}
	noSlotsEvent struct {
		at     time.Time
		reason string
	}
	cancelEvent struct {
		at    time.Time
		reply chan error
	}
	savepointEvent struct {
		at    time.Time
		sp    *savepointOp
		reply chan error
	}
	// deployUnreachableEvent: a deployment of attempt found its
	// TaskManager unreachable.
	deployUnreachableEvent struct {
		at      time.Time
		attempt int32
	}
)

// call posts ev and waits until the loop handled it (and published its
// effect) or ctx ends.
func (m *Master) call(ctx context.Context, ev any, reply chan struct{}) error {
	if !m.post(ev) {
		return ErrClosed
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return ErrClosed
	}
}

// UpdateTaskState reports a subtask's state (at: when it arrived).
func (m *Master) UpdateTaskState(ctx context.Context, at time.Time, req *clusterv1.UpdateTaskStateRequest) error {
	reply := make(chan struct{})
	return m.call(ctx, taskStateEvent{at: at, req: req, reply: reply}, reply)
}

// Acknowledge reports a subtask's checkpoint acknowledgement; handle is
// req serialized (the state handle the metadata is built from).
func (m *Master) Acknowledge(ctx context.Context, at time.Time, req *clusterv1.AcknowledgeCheckpointRequest, handle []byte) error {
	reply := make(chan struct{})
	return m.call(ctx, ackEvent{at: at, req: req, handle: handle, reply: reply}, reply)
}

// Decline reports that a subtask declined a checkpoint.
func (m *Master) Decline(ctx context.Context, at time.Time, req *clusterv1.DeclineCheckpointRequest) error {
	reply := make(chan struct{})
	return m.call(ctx, declineEvent{at: at, req: req, reply: reply}, reply)
}

// TaskManagerLost fails the job's subtasks on tm.
func (m *Master) TaskManagerLost(at time.Time, tm, reason string) {
	m.post(taskManagerLostEvent{at: at, tm: tm, reason: reason})
}

// OfferSlots gives the job slots (taken from the TaskManagers' free
// slots); a job that no longer waits gives them back. The scheduler
// offers again only after the master took the offer (Offering).
func (m *Master) OfferSlots(at time.Time, slots []string) {
	m.offering.Store(true)
	if !m.post(slotsEvent{at: at, slots: slots}) {
		m.offering.Store(false)
		m.exec.ReleaseSlots(slots)
	}
}

// Offering reports whether a slot offer is on its way to the loop.
func (m *Master) Offering() bool { return m.offering.Load() }

// NoSlots tells a waiting job why it got none (it fails after the slot
// timeout).
func (m *Master) NoSlots(at time.Time, reason string) {
	select {
	case m.events <- noSlotsEvent{at: at, reason: reason}:
	default: // the next scheduling pass tells it again
	}
}

// Cancel cancels the job. The error wraps lifecycle.ErrTerminal if the job
// already ended.
func (m *Master) Cancel(ctx context.Context, at time.Time) error {
	reply := make(chan error, 1)
	if !m.post(cancelEvent{at: at, reply: reply}) {
		return ErrClosed
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return ErrClosed
	}
}

func (m *Master) handle(ev any) {
	switch ev := ev.(type) {
	case taskStateEvent:
		m.now = ev.at
		m.taskState(ev.req)
		m.replies = append(m.replies, func() { close(ev.reply) })
	case ackEvent:
		m.now = ev.at
		m.ck.acknowledge(ev.req, ev.handle)
		m.replies = append(m.replies, func() { close(ev.reply) })
	case declineEvent:
		m.now = ev.at
		m.ck.decline(ev.req)
		m.replies = append(m.replies, func() { close(ev.reply) })
	case taskManagerLostEvent:
		m.now = ev.at
		m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventTaskManagerLost, Time: ev.at, TaskManager: ev.tm, Reason: ev.reason})
	case slotsEvent:
		m.now = ev.at
		m.offering.Store(false)
		if m.plan == nil {
			m.exec.ReleaseSlots(ev.slots)
			return
		}
		m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventSlots, Time: ev.at, Slots: ev.slots})
	case noSlotsEvent:
		m.now = ev.at
		note, st := m.lc.Note(), m.lc.Status()
		m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventNoSlots, Time: ev.at, Reason: ev.reason})
		if m.lc.Note() == note && m.lc.Status() == st {
			return // nothing new: no view to publish
		}
	case cancelEvent:
		m.now = ev.at
		err := m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventCancel, Time: ev.at})
		m.replies = append(m.replies, func() { ev.reply <- err })
	case savepointEvent:
		m.now = ev.at
		err := m.ck.startSavepoint(ev.sp)
		m.replies = append(m.replies, func() { ev.reply <- err })
	case deployUnreachableEvent:
		m.now = ev.at
		m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventDeployUnreachable, Time: ev.at, Attempt: ev.attempt})
	case ioResult:
		m.now = ev.when()
		ev.apply(m)
	default:
		m.log.Error("job master: unknown event", "job", m.id, "event", fmt.Sprintf("%T", ev))
	}
	m.dirty = true
}

// ioResult is the outcome of the master's own I/O, applied on its loop.
type ioResult interface {
	when() time.Time
	apply(m *Master)
}

// taskState applies a subtask's state report.
func (m *Master) taskState(req *clusterv1.UpdateTaskStateRequest) {
	t := req.GetTask()
	if req.GetState() == clusterv1.TaskState_TASK_STATE_FAILED && t.GetAttempt() == m.lc.Attempt() {
		m.log.Warn("task failed", "job", m.id, "task", t.GetTask(), "subtask", t.GetSubtask(), "failure", req.GetFailure())
	}
	m.stepLifecycle(lifecycle.Event{
		Type: lifecycle.EventTaskState, Time: m.now, Attempt: t.GetAttempt(), Task: t.GetTask(), Subtask: t.GetSubtask(),
		TaskManager: req.GetTaskManagerId(), State: req.GetState(), Failure: req.GetFailure(), Unreadable: req.GetUnreadableCheckpointId(),
	})
}

// stepLifecycle feeds one event to the lifecycle machine and carries out
// its actions; an action may step the machine again (a subtask whose
// TaskManager is gone is reported canceled at once).
func (m *Master) stepLifecycle(ev lifecycle.Event) error {
	acts, err := m.lc.Step(ev)
	if err != nil {
		return err
	}
	// Step's slice is reused by the next Step, and carrying out an action
	// may step again: copy first.
	for _, a := range append([]lifecycle.Action(nil), acts...) {
		m.execLifecycle(a)
	}
	return nil
}

func (m *Master) execLifecycle(a lifecycle.Action) {
	switch a.Type {
	case lifecycle.ActionStatus:
		m.log.Info("job status", "job", m.id, "status", lifecycle.ShortStatus(a.Status), "message", a.Message)
		m.dirty = true
	case lifecycle.ActionPersist:
		m.persist, m.dirty = true, true
	case lifecycle.ActionDeploy:
		m.deploy(a.Attempt, a.Slots)
	case lifecycle.ActionCancelTasks:
		m.cancelTasks(a.Attempt, a.Subtasks)
	case lifecycle.ActionReleaseSlots:
		m.exec.ReleaseSlots(a.Slots)
	case lifecycle.ActionWantSlots:
		m.exec.WantSlots()
	case lifecycle.ActionStartCheckpoints:
		m.ck.start(m.now)
	case lifecycle.ActionStopCheckpoints:
		m.ck.stop(a.Message)
	case lifecycle.ActionTaskFinished:
		m.ck.taskFinished(checkpoint.TaskID{Vertex: a.Task, Subtask: int(a.Subtask)})
	case lifecycle.ActionRestoreUnreadable:
		m.ck.restoreUnreadable(a.CheckpointID, a.Message)
	case lifecycle.ActionCleanupCheckpoints:
		m.ck.cleanup()
	case lifecycle.ActionRestartAt:
		// The loop ticks the machine every TickInterval.
	case lifecycle.ActionChooseRestore:
		m.ck.chooseRestore(a.Attempt)
	}
}
