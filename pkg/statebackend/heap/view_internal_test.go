package heap

import (
	"fmt"
	"runtime"
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

// The first write to a frozen key group copies its chunk array and the one
// chunk the key hashes to, not the key group's whole table.
func TestFirstWriteCopiesOneChunk(t *testing.T) {
	e, err := New(statebackend.Options{MaxParallelism: 8})
	if err != nil {
		t.Fatal(err)
	}
	s := e.Store().(*store)
	c := &statebackend.Cell{KeyGroup: 3}
	for i := range 5000 {
		c.Key = fmt.Appendf(c.Key[:0], "key-%d", i)
		if err := s.Set(c, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	old := s.states[0][3]
	c.Key = []byte("key-7")
	if err := s.Set(c, []byte("w")); err != nil {
		t.Fatal(err)
	}
	nt := s.states[0][3]
	if nt == old {
		t.Fatal("frozen table written in place")
	}
	var copied, kept int
	for i := range nt.chunks {
		if nt.chunks[i] != old.chunks[i] {
			copied++
		} else {
			kept++
		}
		if n := len(old.chunks[i].m); n < 5000/nChunks/2 {
			t.Fatalf("chunk %d holds %d of 5000 keys: keys are not spread", i, n)
		}
	}
	if copied != 1 || kept != nChunks-1 {
		t.Fatalf("first write copied %d chunks, kept %d", copied, kept)
	}
}
