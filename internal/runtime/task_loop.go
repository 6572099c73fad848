package runtime

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
)

// This file holds a task's mailbox loops (a source's, an input-fed task's)
// and the processing of frames, watermarks and channel ends.

// runSource is the mailbox loop of a source task.
func (t *task) runSource() error {
	out := &sourceOutput{t: t}
	var waitUntil time.Time
	if t.wmGen != nil {
		t.wmGen.start(time.Now())
	}
	for {
		if t.canceled() {
			return t.ctx.Err()
		}
		now := time.Now()
		t.runTimers(now)
		t.drainControl()
		if t.err != nil {
			return t.err
		}
		if t.drained {
			return t.finish()
		}
		if t.drainID == 0 && t.stopID == 0 && (waitUntil.IsZero() || !now.Before(waitUntil)) {
			st, err := t.callNext(out)
			t.metrics.publish()
			if t.err != nil {
				return t.err
			}
			if err != nil {
				var re recordError
				t.recordFailed(t.srcVI, err, asRecordError(err, &re))
				if t.err != nil {
					return t.err
				}
				continue
			}
			if st.End {
				return t.finish()
			}
			waitUntil = st.WaitUntil
			if waitUntil.IsZero() || !waitUntil.After(now) {
				waitUntil = time.Time{}
				continue
			}
		}
		if t.drainID != 0 || t.stopID != 0 {
			waitUntil = time.Time{} // drained or stopped: wait for the savepoint's completion only
		}
		c := t.armTimer(now, t.nextDeadline(waitUntil))
		idleFrom := time.Now()
		select {
		case <-t.ctx.Done():
		case <-c:
		case m := <-t.env.Control:
			t.handleControl(m)
		case <-t.notifyC:
			t.takeNotifications()
		}
		t.metrics.idleNs += time.Since(idleFrom).Nanoseconds()
		t.stopTimer()
	}
}

func (t *task) callNext(out *sourceOutput) (st api.SourceStatus, err error) {
	defer t.recoverUser(t.srcVI)
	return t.source.Next(out)
}

// runInputs is the mailbox loop of a task fed by input gates.
func (t *task) runInputs() error {
	var cases []reflect.SelectCase
	t.replayInFlight()
	if t.err != nil {
		return t.err
	}
	for {
		if t.canceled() {
			return t.ctx.Err()
		}
		now := time.Now()
		t.runTimers(now)
		t.drainControl()
		if t.err != nil {
			return t.err
		}
		progressed := false
		for _, gs := range t.gates {
			ev, ok, err := gs.gate.Poll()
			if err != nil {
				if errors.Is(err, exchange.ErrPartitionReleased) && t.awaitCancel(releasedGrace) {
					return t.ctx.Err()
				}
				return fmt.Errorf("task %s (subtask %d of %d): input: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, err)
			}
			if !ok {
				continue
			}
			progressed = true
			ch := gs.offset + ev.Channel
			switch {
			case ev.End:
				t.channelEnded(ch)
				t.channelEndBarrier(ch)
			case isControlFrame(ev.Frame):
				t.controlFrame(ch, ev.Frame, ev.Overtaken)
				gs.gate.Recycle(ev.Channel, ev.Frame)
			default:
				t.metrics.bytesIn += int64(len(ev.Frame))
				t.dataBuffer(ch, ev.Frame)
				t.processFrame(ch, ev.Frame)
				gs.gate.Recycle(ev.Channel, ev.Frame)
			}
			if t.err != nil {
				return t.err
			}
			if t.nEnded == len(t.wm) {
				t.metrics.publish()
				return t.finish()
			}
		}
		t.metrics.publish()
		if progressed {
			t.inputProcessed()
			continue
		}
		// Idle: sweep expired state a step at a time, polling the inputs
		// between steps, until a round is complete.
		if t.sweepIdle() {
			continue
		}
		if t.err != nil {
			return t.err
		}
		// Nothing ready: sleep until a gate signals, a timer is due or the
		// task is canceled.
		tc := t.armTimer(now, t.nextDeadline(time.Time{}))
		idleFrom := time.Now()
		switch len(t.gates) {
		case 1:
			select {
			case <-t.ctx.Done():
			case <-tc:
			case <-t.gates[0].gate.Available():
			case m := <-t.env.Control:
				t.handleControl(m)
			case <-t.notifyC:
				t.takeNotifications()
			}
		case 2:
			select {
			case <-t.ctx.Done():
			case <-tc:
			case <-t.gates[0].gate.Available():
			case <-t.gates[1].gate.Available():
			case m := <-t.env.Control:
				t.handleControl(m)
			case <-t.notifyC:
				t.takeNotifications()
			}
		default:
			cases = cases[:0]
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.ctx.Done())})
			if t.env.Control != nil {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.env.Control)})
			}
			notifyAt := -1
			if t.notifyC != nil {
				notifyAt = len(cases)
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.notifyC)})
			}
			if tc != nil {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(tc)})
			}
			for _, gs := range t.gates {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(gs.gate.Available())})
			}
			i, v, ok := reflect.Select(cases)
			switch {
			case i == 1 && ok && t.env.Control != nil:
				t.handleControl(v.Interface())
			case i == notifyAt:
				t.takeNotifications()
			}
		}
		t.metrics.idleNs += time.Since(idleFrom).Nanoseconds()
		t.stopTimer()
	}
}

// releasedGrace is how long a task whose producer released its partition
// early waits for its own cancellation before it reports the lost input as
// its failure.
const releasedGrace = 2 * time.Second

// awaitCancel waits up to d for the task's cancellation and reports
// whether it came. A producer releases its partition before the end
// reached its consumers only when it is canceled or fails; in both cases
// the JobManager cancels the consumers too (a job stop cancels every
// subtask with one RPC each, which arrive in any order), and the consumer
// ends CANCELED rather than reporting the producer's end as a failure of
// its own.
func (t *task) awaitCancel(d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-t.ctx.Done():
		return true
	case <-tm.C:
		return false
	}
}

// processFrame decodes one exchange buffer of channel ch and runs its
// records and events through the chain.
func (t *task) processFrame(ch int, frame []byte) {
	t.rd.reset(frame)
	head := t.head
	if t.input[ch] == 1 {
		head = t.head2
	}
	for {
		kind, ts, idle, err := t.rd.next(&t.rec)
		if err != nil {
			t.fail(fmt.Errorf("task %s (subtask %d of %d): channel %d after record %d: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, ch, t.recs[ch], err))
			return
		}
		switch kind {
		case evNone:
			return
		case evRecord:
			t.recs[ch]++
			t.curChannel, t.curRecord = ch, t.recs[ch]
			t.metrics.in++
			head.Collect(t.rec)
			if t.err != nil {
				return
			}
		case evWatermark:
			if ts > t.wm[ch] {
				t.wm[ch] = ts
				t.advance()
			}
		case evStatus:
			if t.idle[ch] != idle {
				t.idle[ch] = idle
				t.advance()
			}
		}
	}
}

func (t *task) channelEnded(ch int) {
	t.ended[ch] = true
	t.nEnded++
	t.wm[ch] = api.MaxWatermark
	t.advance()
}

// advance recomputes the input watermark (minimum over channels that are
// neither idle nor ended; ended channels count as MaxWatermark) and the
// output stream status (idle when every live channel is idle).
func (t *task) advance() {
	lo, live, active := api.MaxWatermark, 0, 0
	for i, w := range t.wm {
		if t.ended[i] {
			continue
		}
		live++
		if t.idle[i] {
			continue
		}
		active++
		if w < lo {
			lo = w
		}
	}
	if live > 0 && active == 0 {
		if !t.outIdle {
			t.setOutIdle(true)
		}
		return
	}
	if t.outIdle {
		t.setOutIdle(false)
	}
	if lo > t.lastWM {
		t.processWatermark(lo)
	}
}

func (t *task) setOutIdle(idle bool) {
	t.outIdle = idle
	for _, o := range t.outputs {
		o.status(idle)
	}
}

// processWatermark runs a new watermark through the chain and the outputs.
func (t *task) processWatermark(ts int64) {
	t.lastWM = ts
	t.inWM = true
	defer func() { t.inWM = false }()
	for _, l := range t.links {
		if l.keyed != nil {
			// Timers first: the operator and downstream see the watermark
			// after everything it made due.
			t.advanceEventTime(l, ts)
			if t.err != nil {
				return
			}
		}
		if l.wm != nil {
			t.callWatermark(l, ts)
			if t.err != nil {
				return
			}
		}
	}
	for _, o := range t.outputs {
		o.watermark(ts)
	}
	t.metrics.watermark.Set(float64(ts) / 1000)
	t.metrics.sample.watermark.Store(ts)
}

func (t *task) callWatermark(l *opLink, ts int64) {
	defer t.recoverUser(l.vi)
	if err := l.wm.ProcessWatermark(ts, l.next); err != nil {
		t.fail(fmt.Errorf("%s: watermark %d: %w", t.opName(l.vi), ts, err))
	}
}
