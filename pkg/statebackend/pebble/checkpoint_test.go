package pebble_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

// Checkpoint captures every write made before it (including unflushed
// batch and memtable contents) and none after; OpenReadOnly iterates it.
func TestCheckpointAndOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	b, err := pebble.Open(filepath.Join(dir, "db"), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !pebble.IsPebble(b) {
		t.Fatal("IsPebble(pebble backend) = false")
	}
	v, err := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		setKey(b, fmt.Sprint(i))
		if err := v.Update(int64(i)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := b.RegisterEventTimeTimer(int64(i), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	ck := filepath.Join(dir, "ck")
	if err := pebble.Checkpoint(b, ck); err != nil {
		t.Fatal(err)
	}
	setKey(b, "5")
	if err := v.Update(-1); err != nil {
		t.Fatal(err)
	}
	if err := pebble.Checkpoint(b, ck); err == nil {
		t.Fatal("checkpoint into an existing directory succeeded")
	}
	ro, err := pebble.OpenReadOnly(ck, pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if len(ro.States()) != 1 || ro.States()[0].Name != "v" {
		t.Fatalf("states %+v", ro.States())
	}
	var values, timers int
	err = ro.Iterate(ro.KeyGroups(), func(e statebackend.Entry) error {
		if e.State == statebackend.EventTimersState {
			timers++
			return nil
		}
		values++
		if string(e.Key) == "5" && e.Value[len(e.Value)-1] != 5 {
			return fmt.Errorf("key 5 = %x: a write after the checkpoint leaked in", e.Value)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if values != 1000 || timers != 100 {
		t.Fatalf("%d values, %d timers", values, timers)
	}
	// Writes to a read-only backend fail instead of being lost silently.
	setKey(ro, "x")
	rv, _ := api.GetValueState(ro, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	if err := errors.Join(rv.Update(1), ro.Flush()); err == nil {
		t.Fatal("write to a read-only backend succeeded")
	}

	h, err := heap.New(statebackend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if pebble.IsPebble(h) {
		t.Fatal("IsPebble(heap) = true")
	}
	if err := pebble.Checkpoint(h, filepath.Join(dir, "h")); !errors.Is(err, pebble.ErrNotPebble) {
		t.Fatalf("checkpoint of a heap backend: %v", err)
	}
}
