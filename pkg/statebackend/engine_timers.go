package statebackend

import (
	"fmt"
	"strconv"

	"github.com/flowrt/flow/pkg/api"
)

// This file holds the engine's timer service: event- and processing-time
// timers stored per key group, fired in order as time advances.

// ---- timers ----

func (e *Engine) timer(d api.TimeDomain, ts int64, ns []byte, del bool) error {
	if !e.hasKey {
		return fmt.Errorf("%v timer at %d: %w", d, ts, ErrNoCurrentKey)
	}
	if !e.opts.KeyGroups.Contains(e.kg) {
		return fmt.Errorf("%v timer at %d, key %s: key group %d not in %v: %w", d, ts, strconv.Quote(string(e.key)), e.kg, e.opts.KeyGroups, ErrKeyGroupOutOfRange)
	}
	e.tbuf = EncodeTimer(e.tbuf[:0], d, ts, e.kg, e.key, ns)
	var err error
	if del {
		err = e.store.DeleteTimer(e.tbuf)
	} else {
		err = e.store.AddTimer(e.tbuf)
		e.mx.timersRegistered++
	}
	if err != nil {
		return fmt.Errorf("%v timer at %d, key %s: %w", d, ts, strconv.Quote(string(e.key)), err)
	}
	return nil
}

// RegisterEventTimeTimer implements api.TimerService.
func (e *Engine) RegisterEventTimeTimer(ts int64, ns []byte) error {
	return e.timer(api.EventTime, ts, ns, false)
}

// DeleteEventTimeTimer implements api.TimerService.
func (e *Engine) DeleteEventTimeTimer(ts int64, ns []byte) error {
	return e.timer(api.EventTime, ts, ns, true)
}

// RegisterProcessingTimeTimer implements api.TimerService.
func (e *Engine) RegisterProcessingTimeTimer(ts int64, ns []byte) error {
	return e.timer(api.ProcessingTime, ts, ns, false)
}

// DeleteProcessingTimeTimer implements api.TimerService.
func (e *Engine) DeleteProcessingTimeTimer(ts int64, ns []byte) error {
	return e.timer(api.ProcessingTime, ts, ns, true)
}

// NextTimer returns the timestamp of the earliest timer of a domain (the
// runtime schedules its processing-time wake-up with it).
func (e *Engine) NextTimer(d api.TimeDomain) (int64, bool, error) {
	b, ok, err := e.store.FirstTimer(d)
	if err != nil || !ok {
		return 0, false, err
	}
	t, err := DecodeTimer(b)
	if err != nil {
		return 0, false, err
	}
	return t.Timestamp, true, nil
}

func (e *Engine) advance(d api.TimeDomain, to int64, fire func(api.Timer) error) error {
	for {
		b, ok, err := e.store.FirstTimer(d)
		if err != nil {
			return fmt.Errorf("next %v timer: %w", d, err)
		}
		if !ok {
			return nil
		}
		t, err := DecodeTimer(b)
		if err != nil {
			return err
		}
		if t.Timestamp > to {
			return nil
		}
		// Own the bytes: firing may register timers and reuse driver buffers.
		e.fbuf = append(e.fbuf[:0], b...)
		if err := e.store.DeleteTimer(e.fbuf); err != nil {
			return fmt.Errorf("delete fired %v timer: %w", d, err)
		}
		t, _ = DecodeTimer(e.fbuf)
		e.SetCurrentKey(t.Key, t.KeyGroup)
		e.mx.timersFired++
		if err := fire(t); err != nil {
			return err
		}
	}
}

// AdvanceWatermark raises the watermark to ts (it never goes back) and fires
// every event-time timer with timestamp <= ts in timestamp order, each with
// its key current. Timers registered by fire that are due fire too. The
// Timer's slices are valid during the fire call only.
func (e *Engine) AdvanceWatermark(ts int64, fire func(api.Timer) error) error {
	if ts > e.wm {
		e.wm = ts
	}
	return e.advance(api.EventTime, e.wm, fire)
}

// AdvanceProcessingTime fires every processing-time timer with timestamp <=
// now (Unix ms) in timestamp order, each with its key current.
func (e *Engine) AdvanceProcessingTime(now int64, fire func(api.Timer) error) error {
	if now > e.procNow {
		e.procNow = now
	}
	return e.advance(api.ProcessingTime, e.procNow, fire)
}
