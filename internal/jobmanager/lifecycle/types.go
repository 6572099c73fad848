package lifecycle

import (
	"fmt"
	"strings"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// EventType says what happened to a job.
type EventType int

const (
	_ EventType = iota
	// EventSlots: the scheduler gave the job Slots (slot i hosts subtask i
	// of every task vertex).
	EventSlots
	// EventNoSlots: the scheduler found too few free slots; Reason says
	// how many are missing.
	EventNoSlots
	// EventTaskState: subtask Task/Subtask of Attempt on TaskManager
	// reported State (with Failure; Unreadable is the checkpoint it could
	// not read, if that is why it failed).
	EventTaskState
	// EventTaskManagerLost: TaskManager left service for Reason.
	EventTaskManagerLost
	// EventDeployUnreachable: a deployment of Attempt found its TaskManager
	// unreachable; the failure of the attempt then uses no restart attempt.
	EventDeployUnreachable
	// EventCancel: a user asked to cancel the job.
	EventCancel
	// EventFail: the job fails for Reason (e.g. too many failed
	// checkpoints).
	EventFail
	// EventStopping: the job was drained into savepoint Path; its tasks end
	// by themselves and the job then ends FINISHED.
	EventStopping
	// EventStop: stop Attempt now after savepoint Path (cancel its tasks;
	// the job ends FINISHED).
	EventStop
	// EventTick: the time is Time.
	EventTick
	// EventRestoreChosen: the restore point of the restart of Attempt was
	// chosen; Reason, when set, says why none is usable (the job fails);
	// Retry says the choice could not finish (chosen again at the next
	// tick).
	EventRestoreChosen
	// EventJobManagerRestarted: the job was loaded from the job store by a
	// new JobManager (Recover: one that took over as leader, Reason names
	// the takeover).
	EventJobManagerRestarted
)

var eventNames = map[EventType]string{
	EventSlots: "slots", EventNoSlots: "no-slots", EventTaskState: "task", EventTaskManagerLost: "tm-lost",
	EventDeployUnreachable: "deploy-unreachable", EventCancel: "cancel", EventFail: "fail", EventStopping: "stopping",
	EventStop: "stop", EventTick: "tick", EventRestoreChosen: "restore-chosen", EventJobManagerRestarted: "jobmanager-restarted",
}

func (t EventType) String() string {
	if n, ok := eventNames[t]; ok {
		return n
	}
	return fmt.Sprintf("event(%d)", int(t))
}

// Event is one input of the machine. Time is when it happened: the
// machine never reads the clock.
type Event struct {
	Type        EventType
	Time        time.Time
	Attempt     int32
	Task        string
	Subtask     int32
	TaskManager string
	State       clusterv1.TaskState
	Failure     string
	Unreadable  int64
	Slots       []string
	Reason      string
	Path        string
	Retry       bool
	// NoPlan (EventJobManagerRestarted): the stored graph no longer
	// plans, so the job cannot wait for slots either.
	NoPlan bool
	// Recover (EventJobManagerRestarted): the new JobManager took over
	// as leader with high availability; a job that was running resumes
	// as its next attempt instead of failing.
	Recover bool
}

// ActionType says what the job master must do.
type ActionType int

const (
	_ ActionType = iota
	// ActionStatus: the job's status changed to Status (Message says why).
	ActionStatus
	// ActionPersist: the job's record changed; store it.
	ActionPersist
	// ActionDeploy: deploy every subtask of Attempt to Slots.
	ActionDeploy
	// ActionCancelTasks: cancel Subtasks of Attempt; report CANCELED for
	// those whose TaskManager cannot be reached.
	ActionCancelTasks
	// ActionReleaseSlots: give Slots back to the scheduler.
	ActionReleaseSlots
	// ActionWantSlots: the job waits for slots for Attempt.
	ActionWantSlots
	// ActionStartCheckpoints: Attempt runs; start its checkpoint
	// coordinator.
	ActionStartCheckpoints
	// ActionStopCheckpoints: end the attempt's checkpointing; pending
	// checkpoints fail with Message.
	ActionStopCheckpoints
	// ActionTaskFinished: subtask Task/Subtask finished (the coordinator
	// no longer waits for its acknowledgements).
	ActionTaskFinished
	// ActionRestoreUnreadable: a subtask could not read checkpoint
	// CheckpointID (Message): never restore it again.
	ActionRestoreUnreadable
	// ActionCleanupCheckpoints: the job FINISHED or was CANCELED; delete its
	// checkpoints unless they are retained.
	ActionCleanupCheckpoints
	// ActionRestartAt: the job restarts at Time; tick it then.
	ActionRestartAt
	// ActionChooseRestore: choose the restore point of the restart of
	// Attempt; answer with EventRestoreChosen.
	ActionChooseRestore
)

var actionNames = map[ActionType]string{
	ActionStatus: "status", ActionPersist: "persist", ActionDeploy: "deploy", ActionCancelTasks: "cancel-tasks",
	ActionReleaseSlots: "release-slots", ActionWantSlots: "want-slots", ActionStartCheckpoints: "start-checkpoints",
	ActionStopCheckpoints: "stop-checkpoints", ActionTaskFinished: "task-finished", ActionRestoreUnreadable: "restore-unreadable",
	ActionCleanupCheckpoints: "cleanup-checkpoints", ActionRestartAt: "restart-at", ActionChooseRestore: "choose-restore",
}

func (t ActionType) String() string {
	if n, ok := actionNames[t]; ok {
		return n
	}
	return fmt.Sprintf("action(%d)", int(t))
}

// Subtask names one subtask and where it runs.
type Subtask struct {
	Task        string
	Index       int32
	TaskManager string
}

// Action is one output of the machine.
type Action struct {
	Type         ActionType
	Status       clusterv1.JobStatus
	Message      string
	Attempt      int32
	Slots        []string
	Subtasks     []Subtask
	Task         string
	Subtask      int32
	CheckpointID int64
	Time         time.Time
}

// String renders an action for scenario output, e.g.
// "status FAILING: task src (subtask 0 of 2) failed: boom".
func (a Action) String() string {
	var b strings.Builder
	b.WriteString(a.Type.String())
	switch a.Type {
	case ActionStatus:
		fmt.Fprintf(&b, " %s: %s", ShortStatus(a.Status), a.Message)
	case ActionDeploy:
		fmt.Fprintf(&b, " attempt=%d slots=%s", a.Attempt, strings.Join(a.Slots, ","))
	case ActionCancelTasks:
		parts := make([]string, len(a.Subtasks))
		for i, s := range a.Subtasks {
			parts[i] = fmt.Sprintf("%s/%d@%s", s.Task, s.Index, s.TaskManager)
		}
		fmt.Fprintf(&b, " attempt=%d [%s] (%s)", a.Attempt, strings.Join(parts, " "), a.Message)
	case ActionReleaseSlots:
		fmt.Fprintf(&b, " %s", strings.Join(a.Slots, ","))
	case ActionWantSlots, ActionStartCheckpoints, ActionChooseRestore:
		fmt.Fprintf(&b, " attempt=%d", a.Attempt)
	case ActionStopCheckpoints:
		fmt.Fprintf(&b, " (%s)", a.Message)
	case ActionTaskFinished:
		fmt.Fprintf(&b, " %s/%d", a.Task, a.Subtask)
	case ActionRestoreUnreadable:
		fmt.Fprintf(&b, " id=%d (%s)", a.CheckpointID, a.Message)
	case ActionRestartAt:
		fmt.Fprintf(&b, " t=%d", a.Time.UnixMilli())
	}
	return b.String()
}
