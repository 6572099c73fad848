package checkpoint

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// outcomes checks the action stream of one Coordinator against the promises
// in doc.go.
type outcomes struct {
	cfg          Config
	lastTrigger  uint64
	savepoint    map[uint64]bool
	finalized    map[uint64]bool
	terminal     map[uint64]ActionType
	lastComplete uint64
	failedJob    bool
}

func (o *outcomes) apply(c *Coordinator, actions []Action) error {
	for _, a := range actions {
		switch a.Type {
		case ActionTrigger:
			if a.ID != o.lastTrigger+1 {
				return fmt.Errorf("trigger %d after %d", a.ID, o.lastTrigger)
			}
			if o.failedJob {
				return fmt.Errorf("trigger %d after fail-job", a.ID)
			}
			o.lastTrigger = a.ID
			o.savepoint[a.ID] = a.Savepoint
		case ActionFinalize:
			if o.finalized[a.ID] || o.terminal[a.ID] != 0 {
				return fmt.Errorf("finalize of %d twice or after its end", a.ID)
			}
			if len(a.Acks) != len(c.tasks) {
				return fmt.Errorf("finalize %d with %d acks for %d tasks", a.ID, len(a.Acks), len(c.tasks))
			}
			o.finalized[a.ID] = true
		case ActionComplete, ActionAbort:
			if a.ID == 0 || a.ID > o.lastTrigger || o.terminal[a.ID] != 0 {
				return fmt.Errorf("%v: not triggered or already ended (%v)", a, o.terminal[a.ID])
			}
			o.terminal[a.ID] = a.Type
			if a.Type == ActionComplete {
				if !o.finalized[a.ID] {
					return fmt.Errorf("complete %d without finalize", a.ID)
				}
				if !a.Savepoint {
					if a.ID <= o.lastComplete {
						return fmt.Errorf("complete %d after %d", a.ID, o.lastComplete)
					}
					o.lastComplete = a.ID
				}
			}
		case ActionDiscard:
			if o.terminal[a.ID] != ActionComplete {
				return fmt.Errorf("discard of %d, which did not complete", a.ID)
			}
		case ActionDiscardLate:
			if o.terminal[a.ID] == 0 {
				return fmt.Errorf("discard-late of %d, which has not ended", a.ID)
			}
		case ActionFailJob:
			if o.failedJob {
				return errors.New("fail-job twice")
			}
			if o.cfg.TolerableFailures >= 0 && a.Failures != o.cfg.TolerableFailures+1 {
				return fmt.Errorf("fail-job after %d failures with %d tolerable", a.Failures, o.cfg.TolerableFailures)
			}
			o.failedJob = true
		}
	}
	periodic := 0
	for _, p := range c.pending {
		if !p.savepoint {
			periodic++
		}
		if o.terminal[p.id] != 0 {
			return fmt.Errorf("%d pending after it ended", p.id)
		}
	}
	if periodic > o.cfg.MaxConcurrent {
		return fmt.Errorf("%d periodic checkpoints pending, max %d", periodic, o.cfg.MaxConcurrent)
	}
	if len(c.retained) > o.cfg.Retain {
		return fmt.Errorf("retained %v, max %d", c.retained, o.cfg.Retain)
	}
	for i := 1; i < len(c.retained); i++ {
		if c.retained[i] <= c.retained[i-1] {
			return fmt.Errorf("retained %v not ascending", c.retained)
		}
	}
	return nil
}

func TestRandomEvents(t *testing.T) {
	rng := uint64(0x2545f4914f6cdd1d)
	next := func(n int) int {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return int(rng % uint64(n))
	}
	tasks := []TaskID{{"a", 0}, {"a", 1}, {"b", 0}}
	reasons := []Reason{0, ReasonDeclined, ReasonSubsumed, ReasonCanceled, ReasonTaskNotReady}
	counts := map[ActionType]int{}
	defer func() {
		t.Logf("actions over all runs: %v", counts)
		for _, typ := range []ActionType{ActionTrigger, ActionFinalize, ActionComplete, ActionAbort, ActionDiscard, ActionDiscardLate, ActionFailJob} {
			if counts[typ] == 0 {
				t.Errorf("no %s action in any run: the generator needs tuning", typ)
			}
		}
	}()
	for run := 0; run < 2000; run++ {
		cfg := Config{
			Interval:          time.Duration(next(3)*10) * time.Millisecond,
			Timeout:           time.Duration(20+next(50)) * time.Millisecond,
			MaxConcurrent:     1 + next(3),
			TolerableFailures: next(4) - 1,
			Retain:            1 + next(3),
		}
		if cfg.MaxConcurrent == 1 {
			cfg.MinPause = time.Duration(next(3)*5) * time.Millisecond
		}
		c, err := New(cfg, tasks, time.UnixMilli(0), Resume{})
		if err != nil {
			t.Fatal(err)
		}
		o := &outcomes{cfg: c.Config(), savepoint: map[uint64]bool{}, finalized: map[uint64]bool{}, terminal: map[uint64]ActionType{}}
		now := time.UnixMilli(0)
		step := func(ev Event) {
			t.Helper()
			before := c.String()
			actions, err := c.Step(ev)
			if err != nil {
				if c.String() != before || actions != nil {
					t.Fatalf("run %d: %+v: error %v changed the state or returned actions", run, ev, err)
				}
				return
			}
			for _, a := range actions {
				counts[a.Type]++
			}
			if err := o.apply(c, actions); err != nil {
				t.Fatalf("run %d (%+v): %+v -> %v: %v\nstate %s", run, cfg, ev, actions, err, c)
			}
		}
		for i := 0; i < 80; i++ {
			now = now.Add(time.Duration(next(8)) * time.Millisecond)
			ev := Event{Time: now, ID: uint64(next(int(c.lastID) + 2)), Task: tasks[next(len(tasks))]}
			if p := c.Pending(); len(p) > 0 && next(5) > 0 {
				ev.ID = p[next(len(p))] // mostly about pending checkpoints
			}
			switch k := next(20); {
			case k < 6:
				ev.Type = EventTick
			case k < 12:
				ev.Type = EventAck
				ev.Handle = []byte("h")
			case k < 14:
				ev.Type = EventDecline
				ev.Reason = reasons[next(len(reasons))]
			case k < 17:
				ev.Type = EventFinalized
				if next(4) == 0 {
					ev.Err = errors.New("disk full")
				}
			case k < 18:
				ev.Type = EventSavepoint
			case k < 19:
				if next(4) == 0 {
					ev.Type = EventTaskFinished
				} else {
					ev.Type = EventTick
				}
			default:
				if next(10) == 0 {
					ev.Type = EventJobFinished
				} else {
					ev.Type = EventTick
				}
			}
			step(ev)
		}
		// Drain: write every pending metadata, then finish the job.
		for _, id := range c.Pending() {
			if p := c.find(id); p != nil && p.finalizing {
				step(Event{Type: EventFinalized, ID: id})
			}
		}
		step(Event{Type: EventJobFinished})
		for _, id := range c.Pending() {
			step(Event{Type: EventFinalized, ID: id})
		}
		if len(c.pending) != 0 || !c.Stopped() {
			t.Fatalf("run %d: after draining: %s", run, c)
		}
		for id := uint64(1); id <= o.lastTrigger; id++ {
			if o.terminal[id] == 0 {
				t.Fatalf("run %d: checkpoint %d never ended", run, id)
			}
		}
	}
}

func TestUnknownEvent(t *testing.T) {
	c, err := New(Config{}, []TaskID{{"a", 0}}, time.UnixMilli(0), Resume{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Step(Event{Type: 42}); !errors.Is(err, ErrUnknownEvent) {
		t.Fatalf("Step(type 42) = %v", err)
	}
	if got := c.Config(); got.Timeout != DefaultTimeout || got.MaxConcurrent != 1 || got.Retain != 1 {
		t.Fatalf("defaults: %+v", got)
	}
	if _, err := ParseReason("bogus"); err == nil {
		t.Fatal("ParseReason(bogus) succeeded")
	}
}
