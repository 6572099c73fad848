package barrier

import (
	"fmt"
	"testing"
	"time"
)

// checkInvariants verifies the Machine's internal consistency.
func checkInvariants(m *Machine) error {
	exactlyOnce := m.cfg.Mode != ModeAtLeastOnce
	if exactlyOnce && len(m.pending) > 1 {
		return fmt.Errorf("%d checkpoints pending in mode %s", len(m.pending), m.cfg.Mode)
	}
	open, blocked := 0, 0
	for i, c := range m.chans {
		if !c.ended {
			open++
		}
		if c.blocked {
			blocked++
			if len(m.pending) != 1 || m.pending[0].kind != KindAligned {
				return fmt.Errorf("channel %d blocked without a pending aligned checkpoint", i)
			}
			if !m.pending[0].seen.has(i) || c.ended {
				return fmt.Errorf("channel %d blocked but its barrier did not arrive or it ended", i)
			}
		}
		if c.capture != 0 {
			p := m.find(c.capture)
			if p == nil || p.kind != KindUnaligned {
				return fmt.Errorf("channel %d captures for %d, which is not a pending unaligned checkpoint", i, c.capture)
			}
			if p.seen.has(i) || c.ended {
				return fmt.Errorf("channel %d captures for %d after its barrier or end", i, c.capture)
			}
		}
	}
	if open != m.open || blocked != m.nblocked {
		return fmt.Errorf("counters open=%d blocked=%d, actual %d %d", m.open, m.nblocked, open, blocked)
	}
	var prev uint64
	for _, p := range m.pending {
		if p.id <= prev || p.id > m.latest {
			return fmt.Errorf("pending ids out of order or above latest %d: %v", m.latest, m.Pending())
		}
		prev = p.id
		waiting := 0
		for i, c := range m.chans {
			if !c.ended && !p.seen.has(i) {
				waiting++
				if p.kind == KindUnaligned && c.capture != p.id {
					return fmt.Errorf("unaligned checkpoint %d does not capture channel %d", p.id, i)
				}
			}
		}
		if waiting != p.waiting || waiting == 0 {
			return fmt.Errorf("checkpoint %d waiting=%d, actual %d", p.id, p.waiting, waiting)
		}
	}
	return nil
}

// driverModel replays actions the way a driver would and checks them.
type driverModel struct {
	blocked  map[int]bool
	capture  map[int]uint64
	snapshot map[uint64]int
	forward  map[uint64]int
	done     map[uint64]int
	aborted  map[uint64]int
	started  map[uint64]bool
}

func newDriverModel() *driverModel {
	return &driverModel{
		blocked: map[int]bool{}, capture: map[int]uint64{}, snapshot: map[uint64]int{},
		forward: map[uint64]int{}, done: map[uint64]int{}, aborted: map[uint64]int{}, started: map[uint64]bool{},
	}
}

func (d *driverModel) apply(m *Machine, ev Event, actions []Action) error {
	for _, a := range actions {
		if d.aborted[a.ID] > 0 && a.Type != ActionBlock && a.Type != ActionUnblockAll {
			return fmt.Errorf("%v after abort of %d", a, a.ID)
		}
		switch a.Type {
		case ActionBlock:
			if d.blocked[a.Channel] {
				return fmt.Errorf("block of blocked channel %d", a.Channel)
			}
			d.blocked[a.Channel] = true
		case ActionUnblockAll:
			if len(d.blocked) == 0 {
				return fmt.Errorf("unblock-all with nothing blocked")
			}
			clear(d.blocked)
		case ActionStartSnapshot:
			d.snapshot[a.ID]++
			if d.snapshot[a.ID] > 1 {
				return fmt.Errorf("second snapshot of %d", a.ID)
			}
		case ActionForwardBarrier:
			d.forward[a.ID]++
			if d.forward[a.ID] > 1 || d.snapshot[a.ID] != 1 {
				return fmt.Errorf("forward of %d: forwarded %d times, snapshotted %d times", a.ID, d.forward[a.ID], d.snapshot[a.ID])
			}
		case ActionCaptureStart:
			if d.capture[a.Channel] != 0 {
				return fmt.Errorf("capture-start %d on channel %d capturing %d", a.ID, a.Channel, d.capture[a.Channel])
			}
			d.capture[a.Channel] = a.ID
		case ActionCapture:
			if ev.Type != EventRecord || ev.Channel != a.Channel || d.capture[a.Channel] != a.ID {
				return fmt.Errorf("%v for event %+v, model captures %d", a, ev, d.capture[a.Channel])
			}
		case ActionCaptureStop:
			if d.capture[a.Channel] != a.ID {
				return fmt.Errorf("%v, model captures %d", a, d.capture[a.Channel])
			}
			delete(d.capture, a.Channel)
		case ActionAlignmentDone:
			d.done[a.ID]++
			if d.done[a.ID] > 1 {
				return fmt.Errorf("second alignment-done of %d", a.ID)
			}
			if a.LastBarrier.Before(a.FirstBarrier) {
				return fmt.Errorf("%v: last barrier before first", a)
			}
		case ActionAbort:
			d.aborted[a.ID]++
			if d.done[a.ID] > 0 {
				return fmt.Errorf("abort of completed %d", a.ID)
			}
			for ch, id := range d.capture {
				if id == a.ID {
					delete(d.capture, ch)
				}
			}
		default:
			return fmt.Errorf("unknown action %v", a)
		}
	}
	if ev.Type == EventRecord && m.chans[ev.Channel].capture != 0 && len(actions) != 1 {
		return fmt.Errorf("record on capturing channel %d gave %v", ev.Channel, actions)
	}
	for i, c := range m.chans {
		if c.blocked != d.blocked[i] || c.capture != d.capture[i] {
			return fmt.Errorf("channel %d: machine blocked=%v capture=%d, driver blocked=%v capture=%d",
				i, c.blocked, c.capture, d.blocked[i], d.capture[i])
		}
	}
	for _, p := range m.pending {
		d.started[p.id] = true
	}
	return nil
}

// eventMix weights event types: mostly barriers and records, rarely ends.
var eventMix = [16]EventType{
	EventBarrier, EventBarrier, EventBarrier, EventBarrier, EventBarrier, EventBarrier,
	EventRecord, EventRecord, EventRecord, EventRecord,
	EventEnd, EventCancel, EventAbort, EventTick, EventTick, EventTrigger,
}

// decodeScenario turns fuzz bytes into a Config and a list of events.
func decodeScenario(data []byte) (Config, []Event) {
	if len(data) == 0 {
		return Config{Channels: 2}, nil
	}
	h := data[0]
	cfg := Config{Channels: int(h % 5), Mode: Mode(h/5%3 + 1)}
	if cfg.Mode == ModeAligned && h/15%2 == 1 {
		cfg.AlignedTimeout = 40 * time.Millisecond
	}
	if h >= 240 {
		cfg.Channels = 65 + int(h-240) // crosses a bitset word
	}
	var evs []Event
	now := time.UnixMilli(1000)
	for i := 1; i+2 < len(data); i += 3 {
		a, b, c := data[i], data[i+1], data[i+2]
		ev := Event{
			Type:    eventMix[a%16],
			ID:      uint64(b%6 + 1),
			Channel: int(b/6) % (cfg.Channels + 1),
		}
		if a/16%13 == 0 {
			ev.ID = 0
		}
		ev.Options.Savepoint = a/16%8 == 7
		if c%8 != 0 {
			now = now.Add(time.Duration(c/8) * time.Millisecond)
			ev.Time = now
		}
		evs = append(evs, ev)
	}
	return cfg, evs
}

func runScenario(t *testing.T, cfg Config, evs []Event) {
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	d := newDriverModel()
	step := func(ev Event) {
		t.Helper()
		before := m.String()
		actions, err := m.Step(ev)
		if err != nil {
			if m.String() != before || actions != nil {
				t.Fatalf("%+v: error %v changed state %s -> %s or returned %v", ev, err, before, m, actions)
			}
			return
		}
		if err := d.apply(m, ev, actions); err != nil {
			t.Fatalf("%+v -> %v: %v (state %s)", ev, actions, err, m)
		}
		if err := checkInvariants(m); err != nil {
			t.Fatalf("after %+v -> %v: %v (state %s)", ev, actions, err, m)
		}
	}
	for _, ev := range evs {
		step(ev)
	}
	// Drain: end every readable channel until all ended. Ending the last
	// unaligned channel completes the alignment and unblocks the others.
	for progress := true; progress; {
		progress = false
		for i, c := range m.chans {
			if !c.ended && !c.blocked {
				step(Event{Type: EventEnd, Channel: i})
				progress = true
			}
		}
	}
	if m.open != 0 || len(m.pending) != 0 {
		t.Fatalf("after draining: %s", m)
	}
	for id := range d.started {
		if d.done[id]+d.aborted[id] != 1 {
			t.Fatalf("checkpoint %d: done %d times, aborted %d times", id, d.done[id], d.aborted[id])
		}
	}
	for id, n := range d.snapshot {
		if d.forward[id] != n {
			t.Fatalf("checkpoint %d: %d snapshots, %d forwards", id, n, d.forward[id])
		}
		if cfg.Channels > 0 && d.done[id]+d.aborted[id] != 1 {
			t.Fatalf("snapshot %d neither completed nor aborted", id)
		}
	}
	for id := range d.done {
		if d.snapshot[id] != 1 {
			t.Fatalf("checkpoint %d completed without a snapshot", id)
		}
	}
}

// FuzzStep checks that random event sequences never panic and keep the
// invariants: a channel is blocked only while an aligned checkpoint is
// pending, the driver's view of blocked and captured channels matches the
// Machine's, and every started checkpoint is completed or aborted once.
func FuzzStep(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{3, 1, 1, 9, 1, 7, 9, 1, 13, 9, 2, 1, 9})
	f.Add([]byte{18, 1, 1, 9, 1, 7, 9, 6, 0, 255, 1, 13, 9, 1, 19, 9})
	f.Add([]byte{8, 1, 1, 9, 2, 7, 9, 1, 13, 9, 1, 14, 9, 1, 2, 9})
	f.Add([]byte{13, 1, 1, 9, 1, 2, 9, 1, 7, 9, 3, 1, 9, 1, 13, 9})
	f.Add([]byte{245, 1, 1, 9, 1, 7, 9, 1, 13, 9, 1, 200, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, evs := decodeScenario(data)
		runScenario(t, cfg, evs)
	})
}

// TestRandomScenarios runs many pseudo-random scenarios on every go test,
// independent of the fuzzing engine.
func TestRandomScenarios(t *testing.T) {
	state := uint64(0x9e3779b97f4a7c15)
	next := func() byte {
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		return byte(state)
	}
	for i := 0; i < 3000; i++ {
		data := make([]byte, 1+3*int(next()%60))
		for j := range data {
			data[j] = next()
		}
		cfg, evs := decodeScenario(data)
		runScenario(t, cfg, evs)
	}
}
