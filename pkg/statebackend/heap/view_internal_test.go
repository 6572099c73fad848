package heap

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"weak"

	"github.com/flowrt/flow/pkg/statebackend"
)

// A view keeps what it froze alive until Release, and no longer: neither
// the replaced cells nor the version registry grow across snapshots.
func TestReleaseFreesFrozenState(t *testing.T) {
	e, err := New(statebackend.Options{MaxParallelism: 8})
	if err != nil {
		t.Fatal(err)
	}
	s := e.Store().(*store)
	c := &statebackend.Cell{KeyGroup: 3, Key: []byte("k")}
	for round := range 3 {
		if err := s.Set(c, []byte("old")); err != nil {
			t.Fatal(err)
		}
		if err := s.AddTimer(statebackend.EncodeTimer(nil, 0, int64(round), 3, []byte("k"), nil)); err != nil {
			t.Fatal(err)
		}
		oldCell := weak.Make(s.lookup(c))
		v, err := s.View()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Set(c, []byte("new")); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteTimer(statebackend.EncodeTimer(nil, 0, int64(round), 3, []byte("k"), nil)); err != nil {
			t.Fatal(err)
		}
		if s.lookup(c) == oldCell.Value() {
			t.Fatal("write after the view went into the frozen cell")
		}
		var seen []string
		if err := v.Scan(0, 3, func(_, _, _, val []byte) error { seen = append(seen, string(val)); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 1 || seen[0] != "old" {
			t.Fatalf("view sees %q, want [old]", seen)
		}
		runtime.GC()
		if oldCell.Value() == nil {
			t.Fatal("frozen cell collected while its view is live")
		}
		v.Release()
		runtime.GC()
		if oldCell.Value() != nil {
			t.Fatal("frozen cell still reachable after Release")
		}
		if n, m := len(s.vers.active), s.vers.max.Load(); n != 0 || m != 0 {
			t.Fatalf("after release: %d active views, max version %d", n, m)
		}
		runtime.KeepAlive(v)
	}
}

// The first write to a frozen key group copies that key group's table
// only; the tables of other key groups stay shared with the view.
func TestFirstWriteCopiesOneKeyGroup(t *testing.T) {
	e, err := New(statebackend.Options{MaxParallelism: 8})
	if err != nil {
		t.Fatal(err)
	}
	s := e.Store().(*store)
	c := &statebackend.Cell{}
	for kg := range 8 {
		c.KeyGroup = kg
		for i := range 100 {
			c.Key = fmt.Appendf(c.Key[:0], "key-%d", i)
			if err := s.Set(c, []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
	}
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	old := slices.Clone(s.states[0])
	c.KeyGroup, c.Key = 3, []byte("key-7")
	if err := s.Set(c, []byte("w")); err != nil {
		t.Fatal(err)
	}
	for kg, tb := range s.states[0] {
		if copied := tb != old[kg]; copied != (kg == 3) {
			t.Fatalf("key group %d: table copied = %v after a write to key group 3", kg, copied)
		}
	}
	if len(s.states[0][3].m) != 100 {
		t.Fatalf("copied table holds %d keys, want 100", len(s.states[0][3].m))
	}
}
