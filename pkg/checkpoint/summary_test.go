package checkpoint

import (
	"testing"
	"time"
)

func TestSummarizeFinalizeAcks(t *testing.T) {
	tasks := []TaskID{{"src", 0}, {"agg", 0}, {"agg", 1}}
	c, err := New(Config{Interval: time.Second}, tasks, time.UnixMilli(0), Resume{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Step(Event{Type: EventTick, Time: time.UnixMilli(1000)}); err != nil {
		t.Fatal(err)
	}
	stats := map[TaskID]AckStats{
		{"agg", 0}: {SyncDuration: 2 * time.Millisecond, AsyncDuration: 40 * time.Millisecond, AlignmentDuration: 7 * time.Millisecond, StateSize: 100},
		{"agg", 1}: {SyncDuration: 5 * time.Millisecond, AsyncDuration: 10 * time.Millisecond, AlignmentDuration: 3 * time.Millisecond, StateSize: 50},
	}
	if _, err := c.Step(Event{Type: EventTaskFinished, Task: TaskID{"src", 0}}); err != nil {
		t.Fatal(err)
	}
	var final []Action
	for task, st := range stats {
		actions, err := c.Step(Event{Type: EventAck, ID: 1, Task: task, Handle: []byte(task.String()), Stats: st})
		if err != nil {
			t.Fatal(err)
		}
		final = append(final, actions...)
	}
	if len(final) != 1 || final[0].Type != ActionFinalize {
		t.Fatalf("actions %v, want one finalize", final)
	}
	got := Summarize(final[0].Acks)
	want := Summary{StateSize: 150, MaxAlignment: 7 * time.Millisecond, MaxSyncDuration: 5 * time.Millisecond,
		MaxAsyncDuration: 40 * time.Millisecond, FinishedTasks: 1, AcknowledgedTasks: 2}
	if got != want {
		t.Fatalf("Summarize = %+v, want %+v", got, want)
	}
	if acks := final[0].Acks; acks[0].Task != (TaskID{"agg", 0}) || acks[2].Task != (TaskID{"src", 0}) || !acks[2].Finished {
		t.Fatalf("acks not sorted by task or finished task missing: %+v", acks)
	}
}
