package lifecycle

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flowrt/flow/internal/jobmanager/restart"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// ErrTerminal is returned by Step for a cancel of a job that already
// reached a terminal status.
var ErrTerminal = errors.New("job already ended")

// ErrUnknownEvent is returned by Step for an event type it does not know.
var ErrUnknownEvent = errors.New("unknown lifecycle event")

// Machine is one job's lifecycle. It owns the job's record (summary,
// subtask states, status history) and changes it only in Step.
type Machine struct {
	d           *clusterv1.JobDetails
	restart     restart.Strategy
	slotTimeout time.Duration

	note string
	// slots are the slots the current attempt holds (nil: none).
	slots []string
	// restartAt is when a RESTARTING job may begin its next attempt;
	// begun is set once it did (it then waits for slots), choosing while
	// the restore point of that attempt is being chosen.
	restartAt time.Time
	begun     bool
	choosing  bool
	// waitingSince is when the job started waiting for slots.
	waitingSince time.Time
	// stoppedWith is the savepoint a stop-with-savepoint took: the job ends
	// FINISHED once its tasks are down.
	stoppedWith string
	// redeploy is the attempt whose deployment hit an unreachable
	// TaskManager: it is scheduled again at once, without using a restart
	// attempt.
	redeploy int32

	actions []Action
}

// New returns the machine of a job whose record is d (a new job in
// CREATED, or one loaded from the job store: then step
// EventJobManagerRestarted first). now is when it starts waiting for slots.
func New(d *clusterv1.JobDetails, strategy restart.Strategy, slotTimeout time.Duration, now time.Time) *Machine {
	return &Machine{d: d, restart: strategy, slotTimeout: slotTimeout, waitingSince: now}
}

// Details is the job's record. It belongs to the machine: callers clone
// it to publish or store it.
func (m *Machine) Details() *clusterv1.JobDetails { return m.d }

// Note is a transient message about the job (waiting for slots, a
// fallback restore).
func (m *Machine) Note() string { return m.note }

// SetNote replaces the note (the job master's own messages).
func (m *Machine) SetNote(n string) { m.note = n }

// Status is the job's status.
func (m *Machine) Status() clusterv1.JobStatus { return m.d.GetSummary().GetStatus() }

// Attempt is the current attempt number (1 for the first).
func (m *Machine) Attempt() int32 { return m.d.GetSummary().GetAttempt() }

// Slots are the slots the current attempt holds.
func (m *Machine) Slots() []string { return m.slots }

// StoppedWith is the savepoint a stop-with-savepoint took ("" if none).
func (m *Machine) StoppedWith() string { return m.stoppedWith }

// WantsSlots reports whether the job waits for slots: a new job, or a
// restarting one whose next attempt began.
func (m *Machine) WantsSlots() bool {
	if m.slots != nil {
		return false
	}
	switch m.Status() {
	case clusterv1.JobStatus_JOB_STATUS_CREATED:
		return true
	case clusterv1.JobStatus_JOB_STATUS_RESTARTING:
		return m.begun
	}
	return false
}

// Step applies one event and returns the actions it leads to, in order.
// The slice is reused by the next Step.
func (m *Machine) Step(ev Event) ([]Action, error) {
	m.actions = m.actions[:0]
	switch ev.Type {
	case EventSlots:
		m.assign(ev)
	case EventNoSlots:
		m.noSlots(ev)
	case EventTaskState:
		m.taskState(ev)
	case EventTaskManagerLost:
		m.taskManagerLost(ev)
	case EventDeployUnreachable:
		if ev.Attempt == m.Attempt() && !IsTerminal(m.Status()) {
			m.redeploy = ev.Attempt
		}
	case EventCancel:
		if st := m.Status(); IsTerminal(st) {
			return nil, fmt.Errorf("%w: job is %s", ErrTerminal, ShortStatus(st))
		}
		m.cancel(ev)
	case EventFail:
		m.taskFailed(ev.Time, ev.Reason)
		m.maybeComplete(ev.Time)
		m.emit(Action{Type: ActionPersist})
	case EventStopping:
		if !IsTerminal(m.Status()) {
			m.stoppedWith = ev.Path
			m.emit(Action{Type: ActionPersist})
		}
	case EventStop:
		if ev.Attempt == m.Attempt() {
			m.stopWithSavepoint(ev.Time, ev.Path)
		}
	case EventTick:
		m.tick(ev.Time)
	case EventRestoreChosen:
		m.restoreChosen(ev)
	case EventJobManagerRestarted:
		if ev.Recover && !ev.NoPlan {
			m.failedOver(ev.Time, ev.Reason)
		} else {
			m.jobManagerRestarted(ev.Time, ev.NoPlan, ev.Reason)
		}
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownEvent, ev.Type)
	}
	return m.actions, nil
}

func (m *Machine) emit(a Action) { m.actions = append(m.actions, a) }

func (m *Machine) setStatus(now time.Time, st clusterv1.JobStatus, msg string) {
	sum := m.d.GetSummary()
	if sum.GetStatus() == st {
		return
	}
	sum.Status = st
	if IsTerminal(st) {
		sum.EndTimeMs = now.UnixMilli()
	}
	m.d.History = append(m.d.History, &clusterv1.StatusChange{Status: st, TimeMs: now.UnixMilli(), Message: msg})
	m.note = msg
	m.emit(Action{Type: ActionStatus, Status: st, Message: msg})
}

func (m *Machine) fail(now time.Time, msg string) {
	m.d.Summary.Failure = msg
	m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_FAILED, msg)
	m.emit(Action{Type: ActionPersist})
}

// jobManagerRestarted fails a stored job that was past waiting for slots
// when the previous JobManager stopped: its tasks are gone with it.
func (m *Machine) jobManagerRestarted(now time.Time, noPlan bool, why string) {
	st := m.Status()
	if IsTerminal(st) || st == clusterv1.JobStatus_JOB_STATUS_CREATED && !noPlan {
		return
	}
	for _, t := range m.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			if !IsTerminalTask(s.GetState()) {
				s.State = clusterv1.TaskState_TASK_STATE_FAILED
				s.Failure = "JobManager restarted"
			}
		}
	}
	if why != "" {
		why = " (" + why + ")"
	}
	m.fail(now, "the JobManager restarted while the job was "+ShortStatus(st)+why+"; submit it again")
}

// failedOver resumes a stored job under a new leader (high
// availability): the previous leader's tasks are canceled (the
// TaskManagers are told when they register, their attempt is stale), and
// a job that was running, failing or restarting restarts at once as its
// next attempt from its latest checkpoint, without using a restart
// attempt (a JobManager failure is not the job's). A job being canceled
// ends CANCELED, one being stopped with a savepoint FINISHED (the
// savepoint completed before the stop began). A job still waiting for its
// first slots just waits.
func (m *Machine) failedOver(now time.Time, reason string) {
	st := m.Status()
	if IsTerminal(st) || st == clusterv1.JobStatus_JOB_STATUS_CREATED {
		return
	}
	for _, t := range m.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			if !IsTerminalTask(s.GetState()) {
				s.State = clusterv1.TaskState_TASK_STATE_CANCELED
			}
		}
	}
	m.slots, m.begun, m.choosing, m.redeploy = nil, false, false, 0
	if st == clusterv1.JobStatus_JOB_STATUS_CANCELING {
		h := m.d.GetHistory()
		if n := len(h); n > 0 && strings.HasPrefix(h[n-1].GetMessage(), "stopping after savepoint ") {
			m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_FINISHED, reason+"; the job was stopping after its savepoint: "+strings.TrimPrefix(h[n-1].GetMessage(), "stopping after "))
		} else {
			m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_CANCELED, reason+"; the job was being canceled")
		}
		m.emit(Action{Type: ActionPersist})
		return
	}
	m.d.Summary.Failure = ""
	// A status change even when it was RESTARTING: the history shows the
	// takeover.
	m.d.Summary.Status = clusterv1.JobStatus_JOB_STATUS_UNSPECIFIED
	m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_RESTARTING, fmt.Sprintf("%s: recovering as attempt %d from the latest checkpoint", reason, m.Attempt()+1))
	m.restartAt = now
	m.emit(Action{Type: ActionRestartAt, Time: now})
	m.emit(Action{Type: ActionPersist})
}

// assign places subtask i of every task vertex in slot i and deploys.
func (m *Machine) assign(ev Event) {
	if !m.WantsSlots() {
		m.emit(Action{Type: ActionReleaseSlots, Slots: ev.Slots})
		return
	}
	m.slots = ev.Slots
	n := 0
	for _, t := range m.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			s.TaskManagerId = ev.Slots[s.GetIndex()]
			s.State = clusterv1.TaskState_TASK_STATE_DEPLOYING
			s.Failure = ""
			n++
		}
	}
	m.note = fmt.Sprintf("deploying %d subtasks to %d slots", n, len(ev.Slots))
	m.emit(Action{Type: ActionPersist})
	m.emit(Action{Type: ActionDeploy, Attempt: m.Attempt(), Slots: ev.Slots})
}

// noSlots records that the scheduler found too few free slots; a job that
// waited longer than the slot timeout fails.
func (m *Machine) noSlots(ev Event) {
	if !m.WantsSlots() {
		return
	}
	if waited := ev.Time.Sub(m.waitingSince); waited >= m.slotTimeout {
		m.fail(ev.Time, fmt.Sprintf("%s; waited %s: add TaskManagers or slots (--slots), or lower the job's parallelism", ev.Reason, m.slotTimeout))
		return
	}
	m.note = "waiting for slots: " + ev.Reason
}

// Subtask is the record of subtask index of task (nil if there is none).
func (m *Machine) Subtask(task string, index int32) *clusterv1.SubtaskInfo {
	return m.subtask(task, index)
}

func (m *Machine) subtask(task string, index int32) *clusterv1.SubtaskInfo {
	subs := m.subtasks(task)
	if index < 0 || int(index) >= len(subs) {
		return nil
	}
	return subs[index]
}

func (m *Machine) subtasks(task string) []*clusterv1.SubtaskInfo {
	for _, t := range m.d.GetTasks() {
		if t.GetId() == task {
			return t.GetSubtasks()
		}
	}
	return nil
}

// Wants reports whether the job expects the subtask of attempt to run on
// TaskManager tm.
func (m *Machine) Wants(task string, subtask, attempt int32, tm string) bool {
	if attempt != m.Attempt() || IsTerminal(m.Status()) {
		return false
	}
	s := m.subtask(task, subtask)
	return s != nil && s.GetTaskManagerId() == tm && !IsTerminalTask(s.GetState())
}

// taskState applies a subtask's report; reports of another attempt, of
// another TaskManager or about a subtask already ended are stale.
func (m *Machine) taskState(ev Event) {
	if ev.Attempt != m.Attempt() {
		return
	}
	s := m.subtask(ev.Task, ev.Subtask)
	if s == nil || s.GetTaskManagerId() != ev.TaskManager || IsTerminalTask(s.GetState()) {
		return
	}
	s.State = ev.State
	s.Failure = ev.Failure
	of := len(m.subtasks(ev.Task))
	switch ev.State {
	case clusterv1.TaskState_TASK_STATE_FAILED:
		if ev.Unreadable != 0 {
			m.emit(Action{Type: ActionRestoreUnreadable, CheckpointID: ev.Unreadable, Message: ev.Failure})
		}
		m.taskFailed(ev.Time, fmt.Sprintf("task %s (subtask %d of %d) failed: %s", ev.Task, ev.Subtask, of, ev.Failure))
	case clusterv1.TaskState_TASK_STATE_CANCELED:
		if m.Status() != clusterv1.JobStatus_JOB_STATUS_CANCELING {
			// Nobody asked for this: the TaskManager is going away.
			m.taskFailed(ev.Time, fmt.Sprintf("task %s (subtask %d of %d) was canceled by TaskManager %s (shutting down)",
				ev.Task, ev.Subtask, of, ev.TaskManager))
		}
	case clusterv1.TaskState_TASK_STATE_RUNNING:
		switch m.Status() {
		case clusterv1.JobStatus_JOB_STATUS_CREATED, clusterv1.JobStatus_JOB_STATUS_RESTARTING:
			m.setStatus(ev.Time, clusterv1.JobStatus_JOB_STATUS_RUNNING, fmt.Sprintf("running (attempt %d)", m.Attempt()))
			m.emit(Action{Type: ActionStartCheckpoints, Attempt: m.Attempt()})
		}
	case clusterv1.TaskState_TASK_STATE_FINISHED:
		m.emit(Action{Type: ActionTaskFinished, Task: ev.Task, Subtask: ev.Subtask})
	}
	m.maybeComplete(ev.Time)
	m.emit(Action{Type: ActionPersist})
}

// taskManagerLost fails every live subtask of the lost TaskManager.
func (m *Machine) taskManagerLost(ev Event) {
	if IsTerminal(m.Status()) {
		return
	}
	hit := false
	for _, t := range m.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			if s.GetTaskManagerId() == ev.TaskManager && !IsTerminalTask(s.GetState()) {
				s.State = clusterv1.TaskState_TASK_STATE_FAILED
				s.Failure = ev.Reason
				hit = true
			}
		}
	}
	if hit {
		m.taskFailed(ev.Time, ev.Reason)
		m.maybeComplete(ev.Time)
		m.emit(Action{Type: ActionPersist})
	}
}

func (m *Machine) cancel(ev Event) {
	switch m.Status() {
	case clusterv1.JobStatus_JOB_STATUS_CREATED:
		if m.slots == nil {
			m.setStatus(ev.Time, clusterv1.JobStatus_JOB_STATUS_CANCELED, "canceled before it was scheduled")
			m.emit(Action{Type: ActionPersist})
			return
		}
	case clusterv1.JobStatus_JOB_STATUS_CANCELING:
		return
	}
	m.emit(Action{Type: ActionStopCheckpoints, Message: "job canceled"})
	m.setStatus(ev.Time, clusterv1.JobStatus_JOB_STATUS_CANCELING, "cancel requested")
	m.cancelSubtasks("job canceled")
	m.maybeComplete(ev.Time)
	m.emit(Action{Type: ActionPersist})
}

// stopWithSavepoint stops a job after its savepoint completed.
func (m *Machine) stopWithSavepoint(now time.Time, path string) {
	if IsTerminal(m.Status()) {
		return
	}
	m.stoppedWith = path
	m.emit(Action{Type: ActionStopCheckpoints, Message: "job stopped with a savepoint"})
	m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_CANCELING, "stopping after savepoint "+path)
	m.cancelSubtasks("job stopped with a savepoint")
	m.maybeComplete(now)
	m.emit(Action{Type: ActionPersist})
}

// taskFailed moves a running job to FAILING and cancels its other
// subtasks.
func (m *Machine) taskFailed(now time.Time, reason string) {
	st := m.Status()
	if IsTerminal(st) || st == clusterv1.JobStatus_JOB_STATUS_FAILING || st == clusterv1.JobStatus_JOB_STATUS_CANCELING {
		return // CANCELING: already going down; the failure is on the subtask
	}
	m.d.Summary.Failure = reason
	m.emit(Action{Type: ActionStopCheckpoints, Message: "job failing: " + reason})
	m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_FAILING, reason)
	m.cancelSubtasks("another task failed")
}

// cancelSubtasks marks every live subtask CANCELING and asks for their
// cancellation; a subtask never deployed is CANCELED at once. The job
// master reports CANCELED back for those whose TaskManager is gone.
func (m *Machine) cancelSubtasks(reason string) {
	var ids []Subtask
	for _, t := range m.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			if IsTerminalTask(s.GetState()) {
				continue
			}
			if s.GetTaskManagerId() == "" || s.GetState() == clusterv1.TaskState_TASK_STATE_UNSPECIFIED {
				s.State = clusterv1.TaskState_TASK_STATE_CANCELED
				continue
			}
			s.State = clusterv1.TaskState_TASK_STATE_CANCELING
			ids = append(ids, Subtask{Task: t.GetId(), Index: s.GetIndex(), TaskManager: s.GetTaskManagerId()})
		}
	}
	if len(ids) > 0 {
		m.emit(Action{Type: ActionCancelTasks, Attempt: m.Attempt(), Subtasks: ids, Message: reason})
	}
}

// maybeComplete moves the job on once every subtask is terminal: to a
// terminal status, or to RESTARTING under the restart strategy.
func (m *Machine) maybeComplete(now time.Time) {
	st := m.Status()
	if IsTerminal(st) || (st == clusterv1.JobStatus_JOB_STATUS_RESTARTING || st == clusterv1.JobStatus_JOB_STATUS_CREATED) && m.slots == nil {
		return
	}
	allFinished := true
	for _, t := range m.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			if !IsTerminalTask(s.GetState()) {
				return
			}
			if s.GetState() != clusterv1.TaskState_TASK_STATE_FINISHED {
				allFinished = false
			}
		}
	}
	sum := m.d.GetSummary()
	switch {
	case st == clusterv1.JobStatus_JOB_STATUS_CANCELING && m.stoppedWith != "":
		m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_FINISHED, "stopped with savepoint "+m.stoppedWith)
	case st == clusterv1.JobStatus_JOB_STATUS_CANCELING:
		m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_CANCELED, "all tasks canceled")
	case st == clusterv1.JobStatus_JOB_STATUS_FAILING || !allFinished:
		var delay time.Duration
		var ok bool
		var reason string
		if m.redeploy == sum.GetAttempt() {
			// The deployment hit an unreachable TaskManager: schedule the
			// job again on the others; no restart attempt is used.
			ok = true
		} else {
			delay, ok, reason = m.restart.OnFailure(now)
		}
		if ok {
			m.releaseSlots()
			m.restartAt, m.begun, m.choosing = now.Add(delay), false, false
			m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_RESTARTING,
				fmt.Sprintf("restarting in %s as attempt %d after: %s", delay, sum.GetAttempt()+1, sum.GetFailure()))
			m.emit(Action{Type: ActionRestartAt, Time: m.restartAt})
			return
		}
		sum.Failure = sum.GetFailure() + " (not restarted: " + reason + ")"
		m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_FAILED, sum.GetFailure())
	case m.stoppedWith != "":
		m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_FINISHED, "stopped with savepoint "+m.stoppedWith)
	default:
		m.setStatus(now, clusterv1.JobStatus_JOB_STATUS_FINISHED, "all tasks finished")
	}
	m.emit(Action{Type: ActionStopCheckpoints, Message: "job " + ShortStatus(m.Status())})
	if st := m.Status(); st == clusterv1.JobStatus_JOB_STATUS_FINISHED || st == clusterv1.JobStatus_JOB_STATUS_CANCELED {
		m.emit(Action{Type: ActionCleanupCheckpoints})
	}
	m.releaseSlots()
}

func (m *Machine) releaseSlots() {
	if m.slots != nil {
		m.emit(Action{Type: ActionReleaseSlots, Slots: m.slots})
		m.slots = nil
	}
}

// tick begins the next attempt of a RESTARTING job once its delay passed:
// first its restore point is chosen (ActionChooseRestore, answered by
// EventRestoreChosen).
func (m *Machine) tick(now time.Time) {
	if m.Status() != clusterv1.JobStatus_JOB_STATUS_RESTARTING || m.begun || m.choosing || now.Before(m.restartAt) {
		return
	}
	m.choosing = true
	m.emit(Action{Type: ActionChooseRestore, Attempt: m.Attempt()})
}

// restoreChosen begins the next attempt (a new attempt number, so stale
// reports of the old one are ignored, and fresh subtask states), or fails
// the job when no restore point is readable.
func (m *Machine) restoreChosen(ev Event) {
	if m.Status() != clusterv1.JobStatus_JOB_STATUS_RESTARTING || !m.choosing || ev.Attempt != m.Attempt() {
		return
	}
	m.choosing = false
	if ev.Reason != "" {
		m.fail(ev.Time, ev.Reason)
		return
	}
	if ev.Retry {
		return // the choice did not finish: chosen again at the next tick
	}
	sum := m.d.GetSummary()
	sum.Attempt++
	sum.Failure = ""
	m.begun = true
	m.waitingSince = m.restartAt
	for _, t := range m.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			s.State, s.Failure, s.TaskManagerId = clusterv1.TaskState_TASK_STATE_UNSPECIFIED, "", ""
		}
	}
	m.emit(Action{Type: ActionPersist})
	m.emit(Action{Type: ActionWantSlots, Attempt: sum.GetAttempt()})
}

// IsTerminal reports whether a job status is final.
func IsTerminal(s clusterv1.JobStatus) bool {
	switch s {
	case clusterv1.JobStatus_JOB_STATUS_FINISHED, clusterv1.JobStatus_JOB_STATUS_CANCELED, clusterv1.JobStatus_JOB_STATUS_FAILED:
		return true
	}
	return false
}

// IsTerminalTask reports whether a subtask state is final.
func IsTerminalTask(s clusterv1.TaskState) bool {
	switch s {
	case clusterv1.TaskState_TASK_STATE_FINISHED, clusterv1.TaskState_TASK_STATE_CANCELED, clusterv1.TaskState_TASK_STATE_FAILED:
		return true
	}
	return false
}

// ShortStatus renders JOB_STATUS_RUNNING as RUNNING.
func ShortStatus(s clusterv1.JobStatus) string {
	const p = "JOB_STATUS_"
	if n := s.String(); len(n) > len(p) && n[:len(p)] == p {
		return n[len(p):]
	}
	return s.String()
}
