package barrier

import (
	"errors"
	"testing"
	"time"
)

func mustStep(t *testing.T, m *Machine, ev Event) []Action {
	t.Helper()
	actions, err := m.Step(ev)
	if err != nil {
		t.Fatalf("Step(%+v): %v", ev, err)
	}
	return append([]Action(nil), actions...)
}

// TestManyInputs aligns 130 channels (three bitset words) in reverse order.
func TestManyInputs(t *testing.T) {
	const n = 130
	m, err := New(Config{Channels: n})
	if err != nil {
		t.Fatal(err)
	}
	base := time.UnixMilli(0)
	for ch := n - 1; ch > 0; ch-- {
		got := mustStep(t, m, Event{Type: EventBarrier, ID: 1, Channel: ch, Time: base.Add(time.Duration(n-ch) * time.Millisecond)})
		if len(got) != 1 || got[0].Type != ActionBlock || got[0].Channel != ch {
			t.Fatalf("barrier on %d: %v", ch, got)
		}
		if !m.Blocked(ch) {
			t.Fatalf("channel %d not blocked", ch)
		}
	}
	got := mustStep(t, m, Event{Type: EventBarrier, ID: 1, Channel: 0, Time: base.Add(time.Second)})
	want := []ActionType{ActionAlignmentDone, ActionStartSnapshot, ActionForwardBarrier, ActionUnblockAll}
	if len(got) != len(want) {
		t.Fatalf("last barrier: %v", got)
	}
	for i := range want {
		if got[i].Type != want[i] {
			t.Fatalf("last barrier: %v", got)
		}
	}
	if d := got[0].AlignmentDuration(); d != time.Second-time.Millisecond {
		t.Fatalf("alignment duration %s", d)
	}
	for ch := 0; ch < n; ch++ {
		if m.Blocked(ch) {
			t.Fatalf("channel %d still blocked", ch)
		}
	}
	if _, err := m.Step(Event{Type: EventBarrier, ID: 1, Channel: 129}); !errors.Is(err, ErrDuplicateBarrier) {
		t.Fatalf("duplicate on channel 129: %v", err)
	}
}

func TestTooManyPendingAtLeastOnce(t *testing.T) {
	m, err := New(Config{Channels: 2, Mode: ModeAtLeastOnce})
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= MaxPendingAtLeastOnce; id++ {
		if got := mustStep(t, m, Event{Type: EventBarrier, ID: id, Channel: 0}); len(got) != 0 {
			t.Fatalf("barrier %d: %v", id, got)
		}
	}
	got := mustStep(t, m, Event{Type: EventBarrier, ID: MaxPendingAtLeastOnce + 1, Channel: 0})
	if len(got) != 1 || got[0] != (Action{Type: ActionAbort, ID: 1, Reason: ReasonTooManyPending}) {
		t.Fatalf("barrier beyond the limit: %v", got)
	}
	if p := m.Pending(); len(p) != MaxPendingAtLeastOnce || p[0] != 2 {
		t.Fatalf("pending %v", p)
	}
	// The dropped checkpoint's remaining barrier is ignored.
	if got := mustStep(t, m, Event{Type: EventBarrier, ID: 1, Channel: 1}); len(got) != 0 {
		t.Fatalf("barrier of dropped checkpoint: %v", got)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	m, err := New(Config{Channels: 3, Mode: ModeUnaligned})
	if err != nil {
		t.Fatal(err)
	}
	mustStep(t, m, Event{Type: EventBarrier, ID: 1, Channel: 0})
	if id, ok := m.Capturing(1); !ok || id != 1 {
		t.Fatalf("Capturing(1) = %d, %v", id, ok)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if a, err := m.Step(Event{Type: EventRecord, Channel: 1}); err != nil || len(a) != 1 {
			t.Fatalf("record: %v %v", a, err)
		}
		if a, err := m.Step(Event{Type: EventRecord, Channel: 0}); err != nil || len(a) != 0 {
			t.Fatalf("record: %v %v", a, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per record", allocs)
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	m, err := New(Config{Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	if m.Config().Mode != ModeAligned {
		t.Fatalf("default mode %s", m.Config().Mode)
	}
	for _, cfg := range []Config{
		{Channels: -1},
		{Channels: 1, Mode: 9},
		{Channels: 1, Mode: ModeUnaligned, AlignedTimeout: time.Second},
		{Channels: 1, AlignedTimeout: -time.Second},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := m.Step(Event{Type: 99}); !errors.Is(err, ErrUnknownEvent) {
		t.Errorf("unknown event: %v", err)
	}
}

func BenchmarkRecord(b *testing.B) {
	m, err := New(Config{Channels: 4, Mode: ModeUnaligned})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Step(Event{Type: EventBarrier, ID: 1, Channel: 0}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := m.Step(Event{Type: EventRecord, Channel: i & 3}); err != nil {
			b.Fatal(err)
		}
	}
}
