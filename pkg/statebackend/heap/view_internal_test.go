package heap

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"unsafe"
	"weak"

	"github.com/flowrt/flow/pkg/statebackend"
)

// A view keeps what it froze alive until Release, and no longer: neither
// the replaced chunks nor the version registry grow across snapshots.
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
		oldChunk := weak.Make(s.states[0].chunks[0])
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
		if s.states[0].chunks[0] == oldChunk.Value() {
			t.Fatal("write after the view went into the frozen chunk")
		}
		var seen []string
		if err := v.Scan(0, 3, func(_, _, _, val []byte) error { seen = append(seen, string(val)); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 1 || seen[0] != "old" {
			t.Fatalf("view sees %q, want [old]", seen)
		}
		runtime.GC()
		if oldChunk.Value() == nil {
			t.Fatal("frozen chunk collected while its view is live")
		}
		v.Release()
		runtime.GC()
		if oldChunk.Value() != nil {
			t.Fatal("frozen chunk still reachable after Release")
		}
		if n, m := len(s.vers.active), s.vers.max.Load(); n != 0 || m != 0 {
			t.Fatalf("after release: %d active views, max version %d", n, m)
		}
		runtime.KeepAlive(v)
	}
}

// The first write to a frozen chunk copies that chunk only; the other
// chunks stay shared with the view. A slot is one cache line.
func TestFirstWriteCopiesOneChunk(t *testing.T) {
	if n := unsafe.Sizeof(slot{}); n != 64 {
		t.Fatalf("slot is %d bytes, want 64", n)
	}
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
	st := s.states[0]
	if len(st.chunks) != 7 {
		t.Fatalf("800 cells in %d chunks, want 7", len(st.chunks))
	}
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	old := slices.Clone(st.chunks)
	c.KeyGroup, c.Key = 3, []byte("key-7")
	if err := s.Set(c, []byte("w")); err != nil {
		t.Fatal(err)
	}
	written := int(st.idx[3][string(statebackend.AppendCellKey(nil, c.Key, nil))]) >> chunkShift
	for i := range st.chunks {
		if copied := st.chunks[i] != old[i]; copied != (i == written) {
			t.Fatalf("chunk %d: copied = %v after a write to a cell in chunk %d", i, copied, written)
		}
	}
	if *st.chunks[written] == *old[written] {
		t.Fatal("the copied chunk does not hold the write")
	}
}

// The store against a plain map model, with views taken and released at
// random: values that move between inline and out-of-line sizes,
// appends across the inline limit, map entries, and deletes of most keys
// (which compact the slabs) while views are live. Every view must keep
// reading what the model held when it was taken.
func TestSlabsAgainstModel(t *testing.T) {
	e, err := New(statebackend.Options{MaxParallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	s := e.Store().(*store)
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string]string{} // "kg|key|uk" -> value
	mk := func(kg int, key, uk string) string { return fmt.Sprintf("%d|%s|%s", kg, key, uk) }
	dumpStore := func(scan func(kg int, fn func(key, ns, uk, v []byte) error) error) map[string]string {
		t.Helper()
		out := map[string]string{}
		for kg := range 4 {
			if err := scan(kg, func(key, _, uk, v []byte) error {
				out[mk(kg, string(key), string(uk))] = string(v)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	type held struct {
		v    statebackend.StoreView
		want map[string]string
	}
	var views []held
	check := func(when string) {
		t.Helper()
		for i, h := range views {
			got := dumpStore(func(kg int, fn func(key, ns, uk, v []byte) error) error { return h.v.Scan(0, kg, fn) })
			if !maps.Equal(got, h.want) {
				t.Fatalf("%s: view %d sees %d items, want %d (or different values)", when, i, len(got), len(h.want))
			}
		}
		got := dumpStore(func(kg int, fn func(key, ns, uk, v []byte) error) error { return s.Scan(0, kg, fn) })
		if !maps.Equal(got, model) {
			t.Fatalf("%s: live store has %d items, model %d (or different values)", when, len(got), len(model))
		}
	}
	val := func() []byte { return bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, rng.IntN(2*inlineCap+4)) }
	compactions := 0
	for round := range 60 {
		keys := 1200
		if round%10 >= 7 {
			keys = 100 // most keys get deleted: slabs compact
		}
		var slabs int32
		if st := s.stateTab(0, false); st != nil {
			slabs = st.next
		}
		for range 1500 {
			kg := rng.IntN(4)
			key := fmt.Sprint("k", rng.IntN(1200))
			c := &statebackend.Cell{KeyGroup: kg, Key: []byte(key)}
			isMap := key[len(key)-1] == '7'
			switch op := rng.IntN(4); {
			case isMap && op < 2:
				uk, v := fmt.Sprint("u", rng.IntN(5)), val()
				if err := s.SetEntry(c, []byte(uk), v); err != nil {
					t.Fatal(err)
				}
				model[mk(kg, key, uk)] = string(v)
			case isMap:
				uk := fmt.Sprint("u", rng.IntN(5))
				if err := s.DeleteEntry(c, []byte(uk)); err != nil {
					t.Fatal(err)
				}
				delete(model, mk(kg, key, uk))
			case rng.IntN(1200) >= keys:
				if err := s.Delete(c); err != nil {
					t.Fatal(err)
				}
				delete(model, mk(kg, key, ""))
			case op == 0:
				v := val()
				if err := s.Append(c, v); err != nil {
					t.Fatal(err)
				}
				model[mk(kg, key, "")] += string(v)
			default:
				v := val()
				if err := s.Set(c, v); err != nil {
					t.Fatal(err)
				}
				model[mk(kg, key, "")] = string(v)
			}
		}
		check(fmt.Sprint("round ", round))
		if s.stateTab(0, false).next < slabs {
			compactions++
		}
		if rng.IntN(3) > 0 {
			v, err := s.View()
			if err != nil {
				t.Fatal(err)
			}
			views = append(views, held{v, maps.Clone(model)})
		}
		for len(views) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(views))
			views[i].v.Release()
			views = slices.Delete(views, i, i+1)
		}
	}
	for _, h := range views {
		h.v.Release()
	}
	if compactions == 0 {
		t.Fatal("the state was never compacted: the test does not reach the compaction path")
	}
	if s.vers.max.Load() != 0 {
		t.Fatalf("max version %d after releasing every view", s.vers.max.Load())
	}
}

// The remembered last cell never answers for another cell: not after the
// cell is deleted and its slot reused, not for another namespace, key
// group or state.
func TestLastCellNeverStale(t *testing.T) {
	e, err := New(statebackend.Options{MaxParallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	s := e.Store().(*store)
	get := func(c *statebackend.Cell) string {
		t.Helper()
		v, ok, err := s.Get(c)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return "<absent>"
		}
		return string(v)
	}
	set := func(c *statebackend.Cell, v string) {
		t.Helper()
		if err := s.Set(c, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	a := &statebackend.Cell{KeyGroup: 1, Key: []byte("a")}
	b := &statebackend.Cell{KeyGroup: 1, Key: []byte("b")}
	set(a, "1")
	if got := get(a); got != "1" {
		t.Fatalf("a = %s", got)
	}
	if err := s.Delete(a); err != nil {
		t.Fatal(err)
	}
	set(b, "2") // reuses a's slot
	for _, tc := range []struct {
		c    *statebackend.Cell
		want string
	}{
		{a, "<absent>"},
		{b, "2"},
		{&statebackend.Cell{KeyGroup: 1, Key: []byte("b"), Namespace: []byte("n")}, "<absent>"},
		{&statebackend.Cell{KeyGroup: 2, Key: []byte("b")}, "<absent>"},
		{&statebackend.Cell{State: 1, KeyGroup: 1, Key: []byte("b")}, "<absent>"},
		{b, "2"},
	} {
		if got := get(tc.c); got != tc.want {
			t.Fatalf("state %d kg %d key %q ns %q = %s, want %s", tc.c.State, tc.c.KeyGroup, tc.c.Key, tc.c.Namespace, got, tc.want)
		}
	}
}
