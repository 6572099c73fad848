package barrier

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors returned (wrapped) by Machine.Step and New. They all mean the
// driver broke the contract described in the package documentation; the
// Machine's state is unchanged when Step returns one of them.
var (
	// ErrInvalidConfig: the Config does not describe a valid machine.
	ErrInvalidConfig = errors.New("barrier: invalid config")
	// ErrUnknownChannel: an event names a channel outside [0, Channels).
	ErrUnknownChannel = errors.New("barrier: unknown input channel")
	// ErrInvalidID: checkpoint id 0 is reserved; ids start at 1.
	ErrInvalidID = errors.New("barrier: invalid checkpoint id")
	// ErrChannelEnded: an event arrived on a channel after its end.
	ErrChannelEnded = errors.New("barrier: event on ended channel")
	// ErrChannelBlocked: an event arrived on a channel the Machine told the
	// driver to block; the driver must not read blocked channels.
	ErrChannelBlocked = errors.New("barrier: event on blocked channel")
	// ErrDuplicateBarrier: a second barrier for the same checkpoint arrived on
	// the same channel (an upstream task emitted it twice).
	ErrDuplicateBarrier = errors.New("barrier: duplicate barrier on channel")
	// ErrNotSource: Trigger was stepped on a task that has input channels;
	// such tasks take checkpoints when barriers arrive, not when triggered.
	ErrNotSource = errors.New("barrier: trigger on a task with inputs")
	// ErrSourceTask: a channel event was stepped on a source task (a Machine
	// with zero channels).
	ErrSourceTask = errors.New("barrier: channel event on a source task")
	// ErrUnknownEvent: the event's Type is not one of the Event* constants.
	ErrUnknownEvent = errors.New("barrier: unknown event type")
)

// Mode is the checkpointing mode of the task.
type Mode uint8

const (
	// ModeAligned is exactly-once with barrier alignment: a channel whose
	// barrier arrived is blocked until the barriers of all other channels
	// arrived, then the snapshot is taken. With Config.AlignedTimeout > 0 an
	// alignment that lasts that long switches to unaligned (see
	// ModeUnaligned) for the rest of that checkpoint.
	ModeAligned Mode = iota + 1
	// ModeUnaligned is exactly-once without alignment: the snapshot is taken
	// and the barrier forwarded as soon as the first barrier arrives; records
	// that arrive on the other channels before their barriers are captured as
	// part of the snapshot (in-flight data). Savepoints are always aligned.
	ModeUnaligned
	// ModeAtLeastOnce never blocks: the snapshot is taken and the barrier
	// forwarded when the last barrier of a checkpoint arrived; records that
	// overtook barriers are in the state before the snapshot, so they may be
	// replayed after a restore. Several checkpoints may be pending at once.
	ModeAtLeastOnce
)

// ParseMode parses "aligned", "unaligned" or "at-least-once".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "aligned":
		return ModeAligned, nil
	case "unaligned":
		return ModeUnaligned, nil
	case "at-least-once":
		return ModeAtLeastOnce, nil
	}
	return 0, fmt.Errorf("checkpoint mode %q: want aligned, unaligned or at-least-once: %w", s, ErrInvalidConfig)
}

func (m Mode) String() string {
	switch m {
	case ModeAligned:
		return "aligned"
	case ModeUnaligned:
		return "unaligned"
	case ModeAtLeastOnce:
		return "at-least-once"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Kind says how a snapshot relates to the task's input.
type Kind uint8

const (
	// KindAligned: every input was aligned; the snapshot has no in-flight data.
	KindAligned Kind = iota + 1
	// KindUnaligned: the snapshot was taken on the first barrier; the records
	// reported by Capture actions belong to it, and the forwarded barrier
	// overtakes the task's buffered output, which belongs to it as well.
	KindUnaligned
	// KindAtLeastOnce: no alignment; records may have overtaken barriers.
	KindAtLeastOnce
)

func (k Kind) String() string {
	switch k {
	case KindAligned:
		return "aligned"
	case KindUnaligned:
		return "unaligned"
	case KindAtLeastOnce:
		return "at-least-once"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Options travel with a barrier and are passed through to the snapshot.
type Options struct {
	// Savepoint marks a savepoint barrier. Savepoints are always aligned: in
	// ModeUnaligned and with an aligned timeout they block like ModeAligned.
	Savepoint bool
}

// Reason says why a checkpoint was aborted.
type Reason uint8

const (
	// ReasonSubsumed: a barrier (or cancellation) of a newer checkpoint
	// arrived before this one finished, or, in ModeAtLeastOnce, a newer
	// checkpoint completed first.
	ReasonSubsumed Reason = iota + 1
	// ReasonCanceled: an upstream task sent a cancellation marker.
	ReasonCanceled
	// ReasonAborted: the driver stepped an Abort event (coordinator
	// notification or local snapshot failure).
	ReasonAborted
	// ReasonTooManyPending: in ModeAtLeastOnce, more than MaxPendingAtLeastOnce
	// checkpoints were pending; the oldest was dropped.
	ReasonTooManyPending
)

func (r Reason) String() string {
	switch r {
	case ReasonSubsumed:
		return "subsumed"
	case ReasonCanceled:
		return "canceled"
	case ReasonAborted:
		return "aborted"
	case ReasonTooManyPending:
		return "too-many-pending"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// EventType is the type of an Event.
type EventType uint8

const (
	// EventBarrier: the barrier of checkpoint ID arrived on Channel at Time.
	EventBarrier EventType = iota + 1
	// EventRecord: a record (or a buffer of records) arrived on Channel and
	// is about to be processed.
	EventRecord
	// EventEnd: Channel ended (end of partition); nothing follows on it.
	EventEnd
	// EventCancel: a cancellation marker for checkpoint ID arrived on Channel.
	EventCancel
	// EventAbort: checkpoint ID is aborted (coordinator notification, or the
	// task's own snapshot failed). Channel is ignored.
	EventAbort
	// EventTick: the time is Time. Drives the aligned timeout.
	EventTick
	// EventTrigger: on a source task (no channels), take checkpoint ID now.
	EventTrigger
)

func (t EventType) String() string {
	switch t {
	case EventBarrier:
		return "barrier"
	case EventRecord:
		return "record"
	case EventEnd:
		return "end"
	case EventCancel:
		return "cancel"
	case EventAbort:
		return "abort"
	case EventTick:
		return "tick"
	case EventTrigger:
		return "trigger"
	}
	return "event(" + strconv.Itoa(int(t)) + ")"
}

// Event is an input of Machine.Step. Only the fields its Type documents are
// read. A zero Time means "no new time information": the Machine keeps using
// the latest time it saw.
type Event struct {
	Type    EventType
	ID      uint64
	Channel int
	Time    time.Time
	Options Options
}

// ActionType is the type of an Action.
type ActionType uint8

const (
	// ActionBlock: stop reading Channel until told to unblock.
	ActionBlock ActionType = iota + 1
	// ActionUnblockAll: resume reading every blocked channel.
	ActionUnblockAll
	// ActionStartSnapshot: take the synchronous part of snapshot ID (Kind,
	// Options) now, before processing anything else. Flush output that must
	// precede the barrier as part of it.
	ActionStartSnapshot
	// ActionForwardBarrier: emit barrier ID (Kind, Options) on every output.
	// With KindUnaligned the barrier overtakes buffered output, which becomes
	// part of snapshot ID.
	ActionForwardBarrier
	// ActionCaptureStart: from now on, records delivered on Channel belong to
	// the in-flight data of snapshot ID (until ActionCaptureStop or
	// ActionAbort for ID).
	ActionCaptureStart
	// ActionCapture: the record of this EventRecord belongs to the in-flight
	// data of snapshot ID for Channel; persist a copy, then process it.
	ActionCapture
	// ActionCaptureStop: Channel's barrier for ID arrived (or Channel ended):
	// its in-flight data for snapshot ID is complete.
	ActionCaptureStop
	// ActionAlignmentDone: every channel delivered its barrier for ID or
	// ended. FirstBarrier and LastBarrier are the times of the first barrier
	// and of the event that completed the alignment. For KindUnaligned this is
	// also the moment the snapshot's in-flight data is complete.
	ActionAlignmentDone
	// ActionAbort: checkpoint ID is aborted for Reason. Decline it to the
	// coordinator, emit a cancellation marker for ID on every output, and
	// discard any in-flight data captured for it.
	ActionAbort
)

func (t ActionType) String() string {
	switch t {
	case ActionBlock:
		return "block"
	case ActionUnblockAll:
		return "unblock-all"
	case ActionStartSnapshot:
		return "snapshot"
	case ActionForwardBarrier:
		return "forward"
	case ActionCaptureStart:
		return "capture-start"
	case ActionCapture:
		return "capture"
	case ActionCaptureStop:
		return "capture-stop"
	case ActionAlignmentDone:
		return "alignment-done"
	case ActionAbort:
		return "abort"
	}
	return "action(" + strconv.Itoa(int(t)) + ")"
}

// Action is an output of Machine.Step for the driver to execute, in order.
// Only the fields its Type documents are meaningful.
type Action struct {
	Type         ActionType
	ID           uint64
	Channel      int
	Kind         Kind
	Options      Options
	Reason       Reason
	FirstBarrier time.Time
	LastBarrier  time.Time
}

// AlignmentDuration is LastBarrier - FirstBarrier (for ActionAlignmentDone).
func (a Action) AlignmentDuration() time.Duration { return a.LastBarrier.Sub(a.FirstBarrier) }

// String renders the action on one line, times in milliseconds since the Unix
// epoch (the scripted tests' notation).
func (a Action) String() string {
	var b strings.Builder
	b.WriteString(a.Type.String())
	switch a.Type {
	case ActionBlock:
		fmt.Fprintf(&b, " ch=%d", a.Channel)
	case ActionStartSnapshot, ActionForwardBarrier:
		fmt.Fprintf(&b, " id=%d kind=%s", a.ID, a.Kind)
		if a.Options.Savepoint {
			b.WriteString(" savepoint")
		}
	case ActionCaptureStart, ActionCapture, ActionCaptureStop:
		fmt.Fprintf(&b, " id=%d ch=%d", a.ID, a.Channel)
	case ActionAlignmentDone:
		fmt.Fprintf(&b, " id=%d first=%d last=%d dur=%s", a.ID,
			a.FirstBarrier.UnixMilli(), a.LastBarrier.UnixMilli(), a.AlignmentDuration())
	case ActionAbort:
		fmt.Fprintf(&b, " id=%d reason=%s", a.ID, a.Reason)
	}
	return b.String()
}
