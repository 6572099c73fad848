package checkpoint

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors returned (wrapped) by New and Coordinator.Step. On error
// the Coordinator's state is unchanged and no action is returned.
var (
	// ErrInvalidConfig: the Config or the task list is not valid.
	ErrInvalidConfig = errors.New("checkpoint: invalid config")
	// ErrUnknownTask: an event names a task the coordinator was not built with.
	ErrUnknownTask = errors.New("checkpoint: unknown task")
	// ErrUnknownCheckpoint: an event names a checkpoint id never triggered.
	ErrUnknownCheckpoint = errors.New("checkpoint: unknown checkpoint")
	// ErrTaskFinished: a task acknowledged a checkpoint after it finished.
	ErrTaskFinished = errors.New("checkpoint: acknowledgement from a finished task")
	// ErrDuplicateAck: a task acknowledged the same checkpoint twice.
	ErrDuplicateAck = errors.New("checkpoint: duplicate acknowledgement")
	// ErrNotFinalizing: EventFinalized for a checkpoint that is not waiting
	// for its metadata to be written.
	ErrNotFinalizing = errors.New("checkpoint: checkpoint is not being finalized")
	// ErrStopped: a savepoint was requested after the job finished or failed.
	ErrStopped = errors.New("checkpoint: coordinator stopped")
	// ErrUnknownEvent: the event's Type is not one of the Event* constants.
	ErrUnknownEvent = errors.New("checkpoint: unknown event type")
)

// TaskID names one subtask: a job vertex (by uid) and a subtask index.
type TaskID struct {
	Vertex  string
	Subtask int
}

func (t TaskID) String() string { return t.Vertex + "/" + strconv.Itoa(t.Subtask) }

func (t TaskID) less(u TaskID) bool {
	if t.Vertex != u.Vertex {
		return t.Vertex < u.Vertex
	}
	return t.Subtask < u.Subtask
}

// AckStats are the timings and sizes a task reports with its acknowledgement.
type AckStats struct {
	SyncDuration      time.Duration // synchronous part of the snapshot
	AsyncDuration     time.Duration // background upload
	AlignmentDuration time.Duration // barrier alignment (pkg/barrier's ActionAlignmentDone)
	StateSize         int64         // bytes of state written for this checkpoint
}

// Ack is one task's acknowledgement of a checkpoint.
type Ack struct {
	Task TaskID
	// Handle is the task's serialized state handle, opaque to the coordinator.
	Handle []byte
	// Finished is set when the task finished before acknowledging; it has no
	// state in this checkpoint.
	Finished bool
	Stats    AckStats
}

// Reason says why a checkpoint was aborted or declined.
type Reason uint8

const (
	// ReasonDeclined: a task could not take its snapshot. Counts as a failure.
	ReasonDeclined Reason = iota + 1
	// ReasonSubsumed: a newer checkpoint completed first, or a task declined
	// because a newer barrier overtook this one. Not a failure.
	ReasonSubsumed
	// ReasonCanceled: a task declined because it received a cancellation
	// marker; the task that caused it reports the real reason. Not a failure.
	ReasonCanceled
	// ReasonTaskNotReady: a task was not running yet. Not a failure.
	ReasonTaskNotReady
	// ReasonExpired: the checkpoint did not complete within Config.Timeout.
	// Counts as a failure.
	ReasonExpired
	// ReasonFinalizeFailed: writing the metadata failed. Counts as a failure.
	ReasonFinalizeFailed
	// ReasonFinished: every task finished; no checkpoint can complete any more.
	// Not a failure.
	ReasonFinished
	// ReasonJobFailed: the coordinator failed the job. Not a failure.
	ReasonJobFailed
)

var reasonNames = [...]string{
	ReasonDeclined: "declined", ReasonSubsumed: "subsumed", ReasonCanceled: "canceled",
	ReasonTaskNotReady: "task-not-ready", ReasonExpired: "expired", ReasonFinalizeFailed: "finalize-failed",
	ReasonFinished: "finished", ReasonJobFailed: "job-failed",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// ParseReason parses the names Reason.String returns.
func ParseReason(s string) (Reason, error) {
	for r, name := range reasonNames {
		if name != "" && name == s {
			return Reason(r), nil
		}
	}
	return 0, fmt.Errorf("checkpoint failure reason %q: %w", s, ErrUnknownEvent)
}

// Counts reports whether a checkpoint that failed for r counts towards
// Config.TolerableFailures.
func (r Reason) Counts() bool {
	switch r {
	case ReasonDeclined, ReasonExpired, ReasonFinalizeFailed:
		return true
	}
	return false
}

// EventType is the type of an Event.
type EventType uint8

const (
	// EventTick: the time is Time. Triggers and expires checkpoints.
	EventTick EventType = iota + 1
	// EventAck: Task acknowledged checkpoint ID with Handle and Stats.
	EventAck
	// EventDecline: Task declined checkpoint ID for Reason.
	EventDecline
	// EventFinalized: the metadata of checkpoint ID was written (Err nil) or
	// could not be (Err set), after ActionFinalize.
	EventFinalized
	// EventTaskFinished: Task finished; it acknowledges nothing any more.
	EventTaskFinished
	// EventJobFinished: every task finished.
	EventJobFinished
	// EventSavepoint: take a savepoint now (ignores Interval, MinPause and
	// MaxConcurrent).
	EventSavepoint
)

var eventNames = [...]string{
	EventTick: "tick", EventAck: "ack", EventDecline: "decline", EventFinalized: "finalized",
	EventTaskFinished: "task-finished", EventJobFinished: "job-finished", EventSavepoint: "savepoint",
}

func (t EventType) String() string {
	if int(t) < len(eventNames) && eventNames[t] != "" {
		return eventNames[t]
	}
	return "event(" + strconv.Itoa(int(t)) + ")"
}

// Event is an input of Coordinator.Step; only the fields its Type documents
// are read. Every event may carry Time; a zero Time keeps the latest time
// seen. The Coordinator keeps Handle (it reappears in ActionFinalize and
// ActionAbort): do not modify it after Step.
type Event struct {
	Type   EventType
	Time   time.Time
	ID     uint64
	Task   TaskID
	Handle []byte
	Stats  AckStats
	Reason Reason
	Err    error
}

// ActionType is the type of an Action.
type ActionType uint8

const (
	// ActionTrigger: ask the source tasks to emit barrier ID (a savepoint if
	// Savepoint), with checkpoint timestamp Time.
	ActionTrigger ActionType = iota + 1
	// ActionFinalize: every expected task acknowledged ID. Write its metadata
	// from Acks (sorted by task) last, then step EventFinalized.
	ActionFinalize
	// ActionComplete: checkpoint ID is complete (triggered at TriggerTime,
	// completed at Time): notify every task (commit two-phase sinks).
	ActionComplete
	// ActionAbort: checkpoint ID failed for Reason: notify the tasks, and
	// discard the state in Acks (received so far) and any metadata written.
	// Failures is the count of consecutive counted failures after it.
	ActionAbort
	// ActionDiscard: completed checkpoint ID fell out of retention: delete
	// it (files still used by retained checkpoints excepted).
	ActionDiscard
	// ActionDiscardLate: Task acknowledged ID after it was completed or
	// aborted: discard Handle's state.
	ActionDiscardLate
	// ActionFailJob: Failures consecutive checkpoint failures exceed
	// Config.TolerableFailures: fail the job. The coordinator stops.
	ActionFailJob
)

var actionNames = [...]string{
	ActionTrigger: "trigger", ActionFinalize: "finalize", ActionComplete: "complete", ActionAbort: "abort",
	ActionDiscard: "discard", ActionDiscardLate: "discard-late", ActionFailJob: "fail-job",
}

func (t ActionType) String() string {
	if int(t) < len(actionNames) && actionNames[t] != "" {
		return actionNames[t]
	}
	return "action(" + strconv.Itoa(int(t)) + ")"
}

// Action is an output of Coordinator.Step for the driver to execute, in
// order; only the fields its Type documents are meaningful.
type Action struct {
	Type        ActionType
	ID          uint64
	Savepoint   bool
	Time        time.Time
	TriggerTime time.Time
	Reason      Reason
	Failures    int
	Acks        []Ack
	Task        TaskID
	Handle      []byte
}

// String renders the action on one line, times in milliseconds since the Unix
// epoch (the scripted tests' notation).
func (a Action) String() string {
	var b strings.Builder
	b.WriteString(a.Type.String())
	if a.ID != 0 {
		fmt.Fprintf(&b, " id=%d", a.ID)
	}
	if a.Savepoint {
		b.WriteString(" savepoint")
	}
	switch a.Type {
	case ActionTrigger:
		fmt.Fprintf(&b, " t=%d", a.Time.UnixMilli())
	case ActionFinalize, ActionAbort:
		if a.Type == ActionAbort {
			fmt.Fprintf(&b, " reason=%s", a.Reason)
			if a.Reason.Counts() && !a.Savepoint {
				fmt.Fprintf(&b, " failures=%d", a.Failures)
			}
		}
		b.WriteString(" acks=[")
		for i, ack := range a.Acks {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(ack.Task.String())
			if ack.Finished {
				b.WriteString(":finished")
			} else {
				fmt.Fprintf(&b, ":%s", ack.Handle)
			}
		}
		b.WriteString("]")
	case ActionComplete:
		fmt.Fprintf(&b, " t=%d dur=%s", a.Time.UnixMilli(), a.Time.Sub(a.TriggerTime))
	case ActionDiscardLate:
		fmt.Fprintf(&b, " task=%s handle=%s", a.Task, a.Handle)
	case ActionFailJob:
		fmt.Fprintf(&b, " failures=%d", a.Failures)
	}
	return b.String()
}

// Summary aggregates the acknowledgements of one checkpoint for metrics and
// display.
type Summary struct {
	StateSize         int64         // sum of StateSize
	MaxAlignment      time.Duration // slowest alignment
	MaxSyncDuration   time.Duration // slowest synchronous snapshot part
	MaxAsyncDuration  time.Duration // slowest upload
	FinishedTasks     int           // tasks that had finished
	AcknowledgedTasks int           // tasks that acknowledged with state
}

// Summarize aggregates acks (typically ActionFinalize's).
func Summarize(acks []Ack) Summary {
	var s Summary
	for _, a := range acks {
		if a.Finished {
			s.FinishedTasks++
			continue
		}
		s.AcknowledgedTasks++
		s.StateSize += a.Stats.StateSize
		s.MaxAlignment = max(s.MaxAlignment, a.Stats.AlignmentDuration)
		s.MaxSyncDuration = max(s.MaxSyncDuration, a.Stats.SyncDuration)
		s.MaxAsyncDuration = max(s.MaxAsyncDuration, a.Stats.AsyncDuration)
	}
	return s
}
