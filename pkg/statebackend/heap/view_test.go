package heap_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	"github.com/flowrt/flow/pkg/statebackend/statebackendtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const maxPar = 32

// engineStates are the states of one engine under test.
type engineStates struct {
	e   *statebackend.Engine
	v   *api.ValueState[int64]
	l   *api.ListState[string]
	m   *api.MapState[string, int64]
	ttl *api.ValueState[string]
}

// rig applies the same operations to a backend that takes views and to a
// reference heap backend that never does: their live contents must stay
// equal, whatever the views froze.
type rig struct {
	t        *testing.T
	clk      *statebackendtest.FakeClock
	cow, ref engineStates
	late     bool // the late state was declared (after the first view)
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, clk: statebackendtest.NewFakeClock(1_000_000)}
	r.cow = r.open()
	r.ref = r.open()
	return r
}

func (r *rig) open() engineStates {
	e, err := heap.New(statebackend.Options{MaxParallelism: maxPar, KeyGroups: keygroup.Range{Start: 4, End: 27}, Clock: r.clk})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = e.Close() })
	s := engineStates{e: e}
	s.v = must(api.GetValueState(e, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()}))(r.t)
	s.l = must(api.GetListState(e, api.ListStateDescriptor[string]{Name: "l", Codec: api.StringCodec()}))(r.t)
	s.m = must(api.GetMapState(e, api.MapStateDescriptor[string, int64]{Name: "m", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec()}))(r.t)
	s.ttl = must(api.GetValueState(e, api.ValueStateDescriptor[string]{Name: "ttl", Codec: api.StringCodec(),
		TTL: &api.TTLConfig{TTL: time.Hour, Update: api.OnReadAndWrite}}))(r.t)
	return s
}

func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ok(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// setKey makes key current on both engines; false if not in their range.
func (r *rig) setKey(i int) bool {
	k := []byte(fmt.Sprint("k", i))
	kg := keygroup.Assign(k, maxPar)
	if kg < 4 || kg > 27 {
		return false
	}
	r.cow.e.SetCurrentKey(k, kg)
	r.ref.e.SetCurrentKey(k, kg)
	return true
}

// fill writes keys [from, to) in every state, with timers.
func (r *rig) fill(from, to int) {
	for i := from; i < to; i++ {
		if !r.setKey(i) {
			continue
		}
		for _, s := range []engineStates{r.cow, r.ref} {
			s.m.SetNamespace([]byte("w"))
			ok(r.t, s.v.Update(int64(i)), s.l.Add("a"), s.l.Add(fmt.Sprint(i)), s.m.Put("x", int64(i)), s.m.Put("y", -int64(i)),
				s.ttl.Update(fmt.Sprint("t", i)), s.e.RegisterEventTimeTimer(int64(i), []byte("w")))
			if i%3 == 0 {
				ok(r.t, s.e.RegisterProcessingTimeTimer(int64(10*i), nil))
			}
		}
	}
}

// churn mutates keys [from, to) every way the store can be written: value
// overwrites and deletes, list appends and clears, map puts, overwrites
// and deletes, TTL reads (refresh and expiry), timer deletions and firing,
// new keys, a state declared after the first view, a full TTL sweep and
// ingest.
func (r *rig) churn(round, from, to int) {
	t := r.t
	if !r.late {
		r.late = true
		for _, s := range []engineStates{r.cow, r.ref} {
			late := must(api.GetValueState(s.e, api.ValueStateDescriptor[int64]{Name: "late", Codec: api.Int64Codec()}))(t)
			for i := from; i < to; i += 7 {
				k := []byte(fmt.Sprint("k", i))
				if kg := keygroup.Assign(k, maxPar); kg >= 4 && kg <= 27 {
					s.e.SetCurrentKey(k, kg)
					ok(t, late.Update(int64(i)))
				}
			}
		}
	}
	for i := from; i < to; i++ {
		if !r.setKey(i) {
			continue
		}
		for _, s := range []engineStates{r.cow, r.ref} {
			s.m.SetNamespace([]byte("w"))
			switch (i + round) % 5 {
			case 0:
				ok(t, s.v.Update(-int64(i)), s.l.Add("b"), s.m.Put("x", int64(round)), s.m.Put(fmt.Sprint("n", round), 1))
			case 1:
				ok(t, s.v.Clear(), s.l.Clear(), s.m.Remove("x"), s.e.DeleteEventTimeTimer(int64(i), []byte("w")))
			case 2:
				ok(t, s.m.Remove("x"), s.m.Remove("y"), s.l.Update([]string{"c"}))
				_, _, err := s.ttl.Lookup() // refresh (OnReadAndWrite) or expire
				ok(t, err)
			case 3:
				ok(t, s.m.Clear(), s.e.RegisterEventTimeTimer(int64(i+1000*round), nil), s.ttl.Update("u"))
			default:
				ok(t, s.v.Update(int64(round)), s.e.RegisterProcessingTimeTimer(int64(i), []byte("p")))
			}
		}
	}
	r.fill(to, to+50+round) // new keys
	for _, s := range []engineStates{r.cow, r.ref} {
		ok(t, s.e.AdvanceWatermark(int64(from+100), func(api.Timer) error { return nil }))
		ok(t, s.e.AdvanceProcessingTime(int64(10*from+100), func(api.Timer) error { return nil }))
		// Ingest writes a map entry and a value of an existing key.
		ok(t, s.e.Ingest(statebackend.Entry{State: "m", KeyGroup: 5, Key: []byte("ingested"), UserKey: []byte("u"), Value: []byte{byte(round)}}))
	}
	r.clk.Set(1_000_000 + int64(round+1)*int64(40*time.Minute/time.Millisecond))
	ok(t, r.cow.e.CleanupExpired(), r.ref.e.CleanupExpired())
	if _, err := r.cow.e.SweepExpired(3); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ref.e.SweepExpired(3); err != nil {
		t.Fatal(err)
	}
}

type dumper interface {
	Iterate(keygroup.Range, func(statebackend.Entry) error) error
}

// dump is the canonical content: "state|kg|key|ns|uk" -> value.
func dump(d dumper) (map[string]string, error) {
	out := map[string]string{}
	err := d.Iterate(keygroup.Range{Start: 0, End: maxPar - 1}, func(e statebackend.Entry) error {
		k := fmt.Sprintf("%q|%d|%q|%q|%x", e.State, e.KeyGroup, e.Key, e.Namespace, e.UserKey)
		if _, dup := out[k]; dup {
			return fmt.Errorf("duplicate entry %s", k)
		}
		out[k] = hex.EncodeToString(e.Value)
		return nil
	})
	return out, err
}

func mustDump(t *testing.T, d dumper) map[string]string {
	t.Helper()
	m, err := dump(d)
	ok(t, err)
	return m
}

func diff(got, want map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok || g != want[k] {
			return fmt.Errorf("entry %s: got %q (present %v), want %q", k, g, ok, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("unexpected entry %s = %q", k, got[k])
		}
	}
	return nil
}

// readView iterates v on its own goroutine, times times, and reports the
// first difference from want.
func readView(v *statebackend.View, want map[string]string, times int) <-chan error {
	done := make(chan error, 1)
	go func() {
		for range times {
			got, err := dump(v)
			if err == nil {
				err = diff(got, want)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

// A view holds the state as of View while another goroutine keeps
// writing (run with -race): values, lists, maps, TTL and timers.
func TestViewConsistentWhileWriting(t *testing.T) {
	r := newRig(t)
	r.fill(0, 3000)
	want := mustDump(t, r.cow.e)
	v := must(r.cow.e.View())(t)
	if want2 := mustDump(t, v); diff(want2, want) != nil {
		t.Fatalf("view differs from the backend at once: %v", diff(want2, want))
	}
	done := readView(v, want, 3)
	for round := range 4 {
		r.churn(round, round*500, round*500+1500)
	}
	ok(t, <-done)
	// After all the writes, the view is still the state as of View.
	ok(t, diff(mustDump(t, v), want))
	v.Release()
	ok(t, diff(mustDump(t, r.cow.e), mustDump(t, r.ref.e)))
	if _, err := dump(v); !errors.Is(err, statebackend.ErrViewReleased) {
		t.Fatalf("iterate after release: %v", err)
	}
	v.Release() // idempotent
}

// Several views at once, released in any order, each holding its own
// point in time while the backend keeps changing.
func TestConcurrentViews(t *testing.T) {
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}, {1, 2, 0}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			r := newRig(t)
			r.fill(0, 2000)
			var views []*statebackend.View
			var wants []map[string]string
			var dones []<-chan error
			for i := range 3 {
				wants = append(wants, mustDump(t, r.cow.e))
				views = append(views, must(r.cow.e.View())(t))
				dones = append(dones, readView(views[i], wants[i], 2))
				r.churn(i, i*300, i*300+900)
			}
			for step, i := range order {
				ok(t, <-dones[i])
				ok(t, diff(mustDump(t, views[i]), wants[i]))
				views[i].Release()
				// The remaining views are unaffected by the release and
				// by writes after it.
				r.churn(10+step, step*200, step*200+600)
				for _, j := range order[step+1:] {
					ok(t, diff(mustDump(t, views[j]), wants[j]))
				}
			}
			ok(t, diff(mustDump(t, r.cow.e), mustDump(t, r.ref.e)))
		})
	}
}

// The write path: the first write to a key group after a view copies its
// table once, later writes to it do not allocate, and once the view is
// released writes are in place again (nothing is copied).
func TestWritePathAfterView(t *testing.T) {
	r := newRig(t)
	r.fill(0, 2000)
	e, s := r.cow.e, r.cow
	key := []byte("k1")
	kg := keygroup.Assign(key, maxPar)
	if kg < 4 || kg > 27 {
		t.Fatalf("test key in key group %d outside the backend", kg)
	}
	update := func() {
		e.SetCurrentKey(key, kg)
		if err := s.v.Update(7); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(100, update); n != 0 {
		t.Fatalf("update before any view: %v allocs", n)
	}
	v := must(e.View())(t)
	want := mustDump(t, v)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	update() // the copying write
	runtime.ReadMemStats(&after)
	if after.Mallocs == before.Mallocs {
		t.Fatal("first write to a frozen key group allocated nothing: it must have written into the view")
	}
	if n := testing.AllocsPerRun(100, update); n != 0 {
		t.Fatalf("later writes to the copied key group: %v allocs", n)
	}
	ok(t, diff(mustDump(t, v), want))
	v.Release()
	// Another key group, untouched since the view: written in place.
	other := []byte("k2")
	okg := keygroup.Assign(other, maxPar)
	if okg == kg || okg < 4 || okg > 27 {
		t.Fatalf("second test key in key group %d", okg)
	}
	if n := testing.AllocsPerRun(100, func() {
		e.SetCurrentKey(other, okg)
		if err := s.v.Update(8); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("update after release: %v allocs", n)
	}
}

// Pebble takes native checkpoints, not views.
func TestPebbleHasNoViews(t *testing.T) {
	e, err := pebble.Open(t.TempDir(), pebble.Options{})
	ok(t, err)
	defer e.Close()
	if _, err := e.View(); !errors.Is(err, statebackend.ErrNoViews) {
		t.Fatalf("pebble View: %v", err)
	}
}

// Closing the backend does not disturb an unreleased view.
func TestViewOutlivesClose(t *testing.T) {
	r := newRig(t)
	r.fill(0, 500)
	want := mustDump(t, r.cow.e)
	v := must(r.cow.e.View())(t)
	ok(t, r.cow.e.Close())
	ok(t, diff(mustDump(t, v), want))
	v.Release()
}
