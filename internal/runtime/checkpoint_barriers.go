package runtime

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/pkg/barrier"
)

// This file holds the task's side of barrier alignment: it steps the
// barrier machine (pkg/barrier) with frames and ticks, executes its actions
// and forwards barriers downstream.

// stepMachine steps the barrier machine and executes its actions.
func (t *task) stepMachine(ev barrier.Event) {
	acts, err := t.ck.machine.Step(ev)
	if err != nil {
		t.fail(fmt.Errorf("task %s (subtask %d of %d): checkpoint barriers on channel %d: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, ev.Channel, err))
		return
	}
	if len(acts) == 0 {
		return
	}
	// Executing an action may step the machine again (an abort after a
	// failed snapshot): copy first.
	acts = append(t.ck.actions[:0], acts...)
	t.ck.actions = nil
	for _, a := range acts {
		t.execAction(a)
		if t.err != nil {
			return
		}
	}
	t.ck.actions = acts[:0]
}

// controlFrame handles a barrier or cancellation marker read on channel ch.
func (t *task) controlFrame(ch int, buf []byte, overtaken int) {
	b, err := decodeControl(buf)
	if err != nil {
		t.fail(fmt.Errorf("task %s (subtask %d of %d): channel %d after record %d: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, ch, t.recs[ch], err))
		return
	}
	if b.cancel {
		t.stepMachine(barrier.Event{Type: barrier.EventCancel, ID: uint64(b.id), Channel: ch, Time: time.Now()})
		return
	}
	if overtaken > 0 {
		t.ck.overtaken[ch] = overtake{id: b.id, n: overtaken}
	}
	if t.ck.pending[b.id] == nil && b.id > t.ck.lastCompleted {
		if pm := t.ck.machine.Pending(); len(pm) == 0 || int64(pm[len(pm)-1]) < b.id || t.ck.cfg.GetMode() == modeAtLeastOnce {
			t.ck.pending[b.id] = &pendingCheckpoint{id: b.id, ts: b.timestampMs, opts: b.opts, flags: b.flags}
		}
	}
	t.stepMachine(barrier.Event{Type: barrier.EventBarrier, ID: uint64(b.id), Channel: ch, Time: time.Now(),
		Options: barrier.Options{Savepoint: b.savepoint()}})
	if overtaken > 0 {
		// The snapshot is taken: copy the overtaken buffers now instead of
		// when they are processed, so the checkpoint does not wait for them.
		if pc := t.ck.pending[b.id]; pc != nil && pc.synced && pc.failed == nil && t.ck.overtaken[ch].id == b.id {
			gs := t.gateStateOf(ch)
			gs.gate.PeekQueued(ch-gs.offset, overtaken, func(buf []byte) { pc.capture(ch, buf) })
			t.ck.overtaken[ch] = overtake{}
			t.maybeUpload(pc)
		}
	}
	// A barrier the machine ignored (older than the pending one) leaves an
	// entry nobody completes.
	if pc := t.ck.pending[b.id]; pc != nil && !pc.synced && !t.machinePending(b.id) {
		delete(t.ck.pending, b.id)
	}
}

func (t *task) machinePending(id int64) bool {
	for _, p := range t.ck.machine.Pending() {
		if int64(p) == id {
			return true
		}
	}
	return false
}

// dataBuffer is called before a data buffer of channel ch is processed:
// it steps the barrier machine and captures the buffer when it is in-flight
// data of an unaligned snapshot.
func (t *task) dataBuffer(ch int, buf []byte) {
	ck := t.ck
	if ck.machine == nil {
		return
	}
	if o := &ck.overtaken[ch]; o.n > 0 {
		o.n--
		if pc := ck.pending[o.id]; pc != nil && pc.synced && pc.failed == nil {
			pc.capture(ch, buf)
			if o.n == 0 {
				defer t.maybeUpload(pc)
			}
		}
	}
	acts, err := ck.machine.Step(barrier.Event{Type: barrier.EventRecord, Channel: ch})
	if err != nil {
		t.fail(fmt.Errorf("task %s (subtask %d of %d): checkpoint barriers on channel %d: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, ch, err))
		return
	}
	for _, a := range acts {
		if a.Type == barrier.ActionCapture {
			if pc := ck.pending[int64(a.ID)]; pc != nil && pc.failed == nil {
				pc.capture(ch, buf)
			}
		}
	}
}

// capture appends a copy of an input buffer to the in-flight data of ch.
func (pc *pendingCheckpoint) capture(ch int, buf []byte) {
	if pc.inFlight == nil {
		pc.inFlight = map[int][]byte{}
	}
	pc.inFlight[ch] = appendInFlight(pc.inFlight[ch], 0, 0, buf)
}

// channelEnd steps the machine with the end of channel ch.
func (t *task) channelEndBarrier(ch int) {
	if t.ck.machine != nil {
		t.stepMachine(barrier.Event{Type: barrier.EventEnd, Channel: ch, Time: time.Now()})
	}
}

// tickBarriers drives the aligned timeout.
func (t *task) tickBarriers(now time.Time) {
	if t.ck.machine != nil && barrierConfig(t.ck.cfg, 1).AlignedTimeout > 0 && len(t.ck.machine.Pending()) > 0 {
		t.stepMachine(barrier.Event{Type: barrier.EventTick, Time: now})
	}
}

// barrierDeadline is when the barrier machine next needs a tick (zero:
// none).
func (t *task) barrierDeadline(now time.Time) time.Time {
	if t.ck == nil || t.ck.machine == nil || barrierConfig(t.ck.cfg, 1).AlignedTimeout <= 0 || len(t.ck.machine.Pending()) == 0 {
		return time.Time{}
	}
	return now.Add(alignTick)
}

func (t *task) execAction(a barrier.Action) {
	ck := t.ck
	id := int64(a.ID)
	switch a.Type {
	case barrier.ActionBlock:
		t.gateOf(a.Channel).Block(a.Channel - t.gateOffset(a.Channel))
	case barrier.ActionUnblockAll:
		for _, gs := range t.gates {
			for i := 0; i < gs.gate.NumChannels(); i++ {
				gs.gate.Unblock(i)
			}
		}
	case barrier.ActionStartSnapshot:
		pc := ck.pending[id]
		if pc == nil {
			t.fail(fmt.Errorf("task %s: barrier machine started snapshot %d without its barrier", t.d.GetId().GetTask(), id))
			return
		}
		pc.flags &^= barrierUnaligned
		if a.Kind == barrier.KindUnaligned {
			pc.flags |= barrierUnaligned
		}
		t.syncSnapshot(pc)
		if pc.failed != nil {
			// Abort after this batch of actions: the machine declines and
			// sends the cancellation marker downstream.
			defer t.stepMachine(barrier.Event{Type: barrier.EventAbort, ID: a.ID, Time: time.Now()})
		}
	case barrier.ActionForwardBarrier:
		if pc := ck.pending[id]; pc != nil && pc.failed == nil {
			t.forwardBarrier(pc)
			if t.err == nil {
				t.maybeUpload(pc)
			}
		}
	case barrier.ActionAlignmentDone:
		if pc := ck.pending[id]; pc != nil {
			pc.alignment = a.AlignmentDuration()
			pc.aligned = true
			t.maybeUpload(pc)
		}
	case barrier.ActionAbort:
		pc := ck.pending[id]
		reason := abortReason(a.Reason)
		if pc != nil && pc.failed != nil {
			reason = "declined: " + pc.failed.Error()
		}
		if pc == nil || !pc.declined {
			t.decline(id, reason)
		}
		if pc != nil {
			pc.discard()
			delete(ck.pending, id)
		}
		t.forwardCancel(id)
	}
}

func abortReason(r barrier.Reason) string {
	switch r {
	case barrier.ReasonSubsumed:
		return "subsumed: a newer checkpoint's barrier arrived first"
	case barrier.ReasonCanceled:
		return "canceled: an upstream task canceled the checkpoint"
	case barrier.ReasonTooManyPending:
		return "declined: too many checkpoints pending at once"
	}
	return "declined: aborted"
}

func (t *task) gateOffset(ch int) int { return t.gateStateOf(ch).offset }

func (t *task) gateOf(ch int) interface{ Block(int) } { return t.gateStateOf(ch).gate }

func (t *task) gateStateOf(ch int) *gateState {
	for i := len(t.gates) - 1; i >= 0; i-- {
		if ch >= t.gates[i].offset {
			return t.gates[i]
		}
	}
	return t.gates[0]
}

// forwardBarrier emits pc's barrier on every output subpartition, after
// the records buffered before it. An unaligned barrier overtakes the
// buffers queued in the partition; they become part of the snapshot.
func (t *task) forwardBarrier(pc *pendingCheckpoint) {
	opts, err := proto.Marshal(pc.opts)
	if err != nil {
		t.fail(fmt.Errorf("encode barrier %d: %w", pc.id, err))
		return
	}
	frame := appendBarrier(nil, pc.id, pc.ts, pc.flags, opts)
	priority := pc.flags&barrierUnaligned != 0
	for oi, o := range t.outputs {
		o.flush()
		for sub := range o.subs {
			var visit func([]byte)
			if priority {
				visit = func(b []byte) { pc.outFlight = appendInFlight(pc.outFlight, oi, sub, b) }
			}
			if err := o.part.EmitEvent(sub, frame, priority, visit); err != nil {
				t.fail(fmt.Errorf("emit barrier %d to %q subpartition %d: %w", pc.id, o.part.ID().DownstreamTask, sub, err))
				return
			}
		}
	}
	t.flushAt = time.Time{}
	pc.forwarded = true
}

// forwardCancel emits a cancellation marker for checkpoint id on every
// output subpartition.
func (t *task) forwardCancel(id int64) {
	frame := appendCancel(nil, id)
	for _, o := range t.outputs {
		o.flush()
		for sub := range o.subs {
			if err := o.part.EmitEvent(sub, frame, false, nil); err != nil {
				t.fail(fmt.Errorf("emit cancellation of checkpoint %d to %q subpartition %d: %w", id, o.part.ID().DownstreamTask, sub, err))
				return
			}
		}
	}
}
