package statebackendtest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
)

// Factory returns a fresh, empty backend with opts; the suite closes it.
type Factory func(t *testing.T, opts statebackend.Options) statebackend.Backend

// FakeClock is a settable api.Clock.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock starts at ms Unix milliseconds.
func NewFakeClock(ms int64) *FakeClock { return &FakeClock{now: time.UnixMilli(ms)} }

// Now implements api.Clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to ms Unix milliseconds.
func (c *FakeClock) Set(ms int64) {
	c.mu.Lock()
	c.now = time.UnixMilli(ms)
	c.mu.Unlock()
}

// Run runs the conformance suite against backends made by factory.
func Run(t *testing.T, factory Factory) {
	open := func(t *testing.T, opts statebackend.Options) statebackend.Backend {
		t.Helper()
		b := factory(t, opts)
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Errorf("close backend: %v", err)
			}
		})
		return b
	}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, open func(*testing.T, statebackend.Options) statebackend.Backend)
	}{
		{"Value", testValue},
		{"List", testList},
		{"Map", testMap},
		{"MapKeyPrefixes", testMapKeyPrefixes},
		{"Reducing", testReducing},
		{"Aggregating", testAggregating},
		{"Namespaces", testNamespaces},
		{"ManyKeys", testManyKeys},
		{"IterateIngest", testIterateIngest},
		{"Redeclare", testRedeclare},
		{"DecodeError", testDecodeError},
		{"CodecVersioning", testCodecVersioning},
		{"NoKeyAndRange", testNoKeyAndRange},
		{"TTLValue", testTTLValue},
		{"TTLList", testTTLList},
		{"TTLMap", testTTLMap},
		{"TTLSweeps", testTTLSweeps},
		{"TTLEventTime", testTTLEventTime},
		{"TimersOrder", testTimersOrder},
		{"TimersDedupDelete", testTimersDedupDelete},
		{"TimersProcessingTime", testTimersProcessingTime},
		{"TimersMany", testTimersMany},
		{"MetricsTimers", testMetricsTimers},
		{"MetricsTTL", testMetricsTTL},
		{"MetricsAccesses", testMetricsAccesses},
		{"MetricsConcurrentScrape", testMetricsConcurrentScrape},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

type opener = func(*testing.T, statebackend.Options) statebackend.Backend

func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func setKey(b statebackend.Backend, key string) {
	b.SetCurrentKey([]byte(key), keygroup.Assign([]byte(key), b.MaxParallelism()))
}

func testValue(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec(), Default: -1}))(t)
	setKey(b, "a")
	if got := must(v.Value())(t); got != -1 {
		t.Fatalf("empty value = %d, want default -1", got)
	}
	if _, found, err := v.Lookup(); err != nil || found {
		t.Fatalf("Lookup on empty = found %v, err %v", found, err)
	}
	ok(t, v.Update(7))
	setKey(b, "b")
	ok(t, v.Update(8))
	setKey(b, "a")
	if got := must(v.Value())(t); got != 7 {
		t.Fatalf("a = %d, want 7", got)
	}
	ok(t, v.Update(9))
	if got := must(v.Value())(t); got != 9 {
		t.Fatalf("a after update = %d, want 9", got)
	}
	ok(t, v.Clear())
	if got := must(v.Value())(t); got != -1 {
		t.Fatalf("a after clear = %d, want -1", got)
	}
	setKey(b, "b")
	if got := must(v.Value())(t); got != 8 {
		t.Fatalf("b = %d, want 8 (clear of a leaked)", got)
	}
	// Empty values and empty keys are values like any other.
	s := must(api.GetValueState(b, api.ValueStateDescriptor[string]{Name: "s", Codec: api.StringCodec(), Default: "dflt"}))(t)
	b.SetCurrentKey(nil, 0)
	ok(t, s.Update(""))
	if got, found, err := s.Lookup(); err != nil || !found || got != "" {
		t.Fatalf("empty string value: %q %v %v", got, found, err)
	}
}

func testList(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	l := must(api.GetListState(b, api.ListStateDescriptor[string]{Name: "l", Codec: api.StringCodec()}))(t)
	setKey(b, "k")
	if got := must(l.Get())(t); got != nil {
		t.Fatalf("empty list = %q", got)
	}
	ok(t, l.Add("a"))
	ok(t, l.Add(""))
	ok(t, l.AddAll([]string{"b", strings.Repeat("x", 300)}))
	want := []string{"a", "", "b", strings.Repeat("x", 300)}
	if got := must(l.Get())(t); !slices.Equal(got, want) {
		t.Fatalf("list = %q, want %q", got, want)
	}
	var first []string
	ok(t, l.Range(func(v string) bool { first = append(first, v); return len(first) < 2 }))
	if len(first) != 2 {
		t.Fatalf("Range did not stop: %q", first)
	}
	ok(t, l.Update([]string{"z"}))
	if got := must(l.Get())(t); !slices.Equal(got, []string{"z"}) {
		t.Fatalf("after Update = %q", got)
	}
	setKey(b, "other")
	if got := must(l.Get())(t); got != nil {
		t.Fatalf("other key sees %q", got)
	}
	setKey(b, "k")
	ok(t, l.Clear())
	if got := must(l.Get())(t); got != nil {
		t.Fatalf("after Clear = %q", got)
	}
	ok(t, l.Add("again"))
	if got := must(l.Get())(t); !slices.Equal(got, []string{"again"}) {
		t.Fatalf("add after clear = %q", got)
	}
}

func collectMap[K comparable, V any](t *testing.T, m *api.MapState[K, V]) map[K]V {
	t.Helper()
	out := map[K]V{}
	ok(t, m.Range(func(k K, v V) bool { out[k] = v; return true }))
	return out
}

func testMap(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	m := must(api.GetMapState(b, api.MapStateDescriptor[string, int64]{Name: "m", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec()}))(t)
	setKey(b, "k")
	if e := must(m.IsEmpty())(t); !e {
		t.Fatal("new map not empty")
	}
	ok(t, m.Put("x", 1))
	ok(t, m.Put("y", 2))
	ok(t, m.Put("", 3))
	ok(t, m.Put("x", 10))
	if v, found, err := m.Get("x"); err != nil || !found || v != 10 {
		t.Fatalf("Get x = %d %v %v", v, found, err)
	}
	if _, found, err := m.Get("nope"); err != nil || found {
		t.Fatalf("Get absent = %v %v", found, err)
	}
	if c := must(m.Contains(""))(t); !c {
		t.Fatal("empty user key missing")
	}
	if got := collectMap(t, m); len(got) != 3 || got["x"] != 10 || got["y"] != 2 || got[""] != 3 {
		t.Fatalf("entries = %v", got)
	}
	ok(t, m.Remove("y"))
	ok(t, m.Remove("never"))
	if got := collectMap(t, m); len(got) != 2 {
		t.Fatalf("after remove = %v", got)
	}
	n := 0
	ok(t, m.Range(func(string, int64) bool { n++; return false }))
	if n != 1 {
		t.Fatalf("Range did not stop: %d", n)
	}
	setKey(b, "k2")
	ok(t, m.Put("x", 5))
	setKey(b, "k")
	ok(t, m.Clear())
	if e := must(m.IsEmpty())(t); !e {
		t.Fatalf("after clear: %v", collectMap(t, m))
	}
	setKey(b, "k2")
	if got := collectMap(t, m); len(got) != 1 || got["x"] != 5 {
		t.Fatalf("clear leaked into k2: %v", got)
	}
	// Reading another state while iterating is allowed.
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "side", Codec: api.Int64Codec()}))(t)
	ok(t, v.Update(4))
	ok(t, m.Range(func(string, int64) bool {
		if got := must(v.Value())(t); got != 4 {
			t.Errorf("nested read = %d", got)
		}
		return true
	}))
}

// testMapKeyPrefixes checks that (key, namespace, user key) boundaries are
// unambiguous: byte concatenations that coincide must stay apart.
func testMapKeyPrefixes(t *testing.T, open opener) {
	b := open(t, statebackend.Options{MaxParallelism: 1})
	m := must(api.GetMapState(b, api.MapStateDescriptor[string, string]{Name: "m", KeyCodec: api.StringCodec(), ValueCodec: api.StringCodec()}))(t)
	cases := []struct{ key, ns, uk string }{{"a", "bc", "d"}, {"ab", "c", "d"}, {"a", "b", "cd"}, {"abc", "", "d"}, {"", "abc", "d"}, {"a\xff", "", ""}, {"a", "\xff", ""}}
	for _, c := range cases {
		b.SetCurrentKey([]byte(c.key), 0)
		m.SetNamespace([]byte(c.ns))
		ok(t, m.Put(c.uk, c.key+"|"+c.ns))
	}
	for _, c := range cases {
		b.SetCurrentKey([]byte(c.key), 0)
		m.SetNamespace([]byte(c.ns))
		got := collectMap(t, m)
		if len(got) != 1 || got[c.uk] != c.key+"|"+c.ns {
			t.Fatalf("key %q ns %q: entries %q", c.key, c.ns, got)
		}
	}
}

func testReducing(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	r := must(api.GetReducingState(b, api.ReducingStateDescriptor[int64]{Name: "sum", Codec: api.Int64Codec(),
		Reduce: func(a, v int64) (int64, error) { return a + v, nil }}))(t)
	setKey(b, "k")
	if _, found, err := r.Get(); err != nil || found {
		t.Fatalf("empty reducing: %v %v", found, err)
	}
	for i := int64(1); i <= 4; i++ {
		ok(t, r.Add(i))
	}
	if v, _, _ := r.Get(); v != 10 {
		t.Fatalf("sum = %d", v)
	}
	r.SetNamespace([]byte("w2"))
	ok(t, r.Add(5))
	ok(t, r.MergeNamespaces([]byte("w3"), nil, []byte("w2")))
	if v, found, _ := r.Get(); !found || v != 15 {
		t.Fatalf("merged = %d %v", v, found)
	}
	r.SetNamespace(nil)
	if _, found, _ := r.Get(); found {
		t.Fatal("merged source not cleared")
	}
	errBoom := errors.New("boom")
	bad := must(api.GetReducingState(b, api.ReducingStateDescriptor[int64]{Name: "bad", Codec: api.Int64Codec(),
		Reduce: func(a, v int64) (int64, error) { return 0, errBoom }}))(t)
	ok(t, bad.Add(1))
	if err := bad.Add(2); !errors.Is(err, errBoom) {
		t.Fatalf("reduce error not returned: %v", err)
	}
}

type avgAcc struct{ Sum, N int64 }

type avg struct{}

func (avg) CreateAccumulator() avgAcc    { return avgAcc{} }
func (avg) Add(a avgAcc, v int64) avgAcc { return avgAcc{a.Sum + v, a.N + 1} }
func (avg) Result(a avgAcc) float64      { return float64(a.Sum) / float64(a.N) }
func (avg) Merge(a, b avgAcc) avgAcc     { return avgAcc{a.Sum + b.Sum, a.N + b.N} }

func testAggregating(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	a := must(api.GetAggregatingState(b, api.AggregatingStateDescriptor[int64, avgAcc, float64]{
		Name: "avg", Aggregator: avg{}, AccCodec: api.JSON[avgAcc]()}))(t)
	setKey(b, "k")
	if _, found, err := a.Get(); err != nil || found {
		t.Fatalf("empty: %v %v", found, err)
	}
	ok(t, a.Add(1))
	ok(t, a.Add(2))
	if v, _, _ := a.Get(); v != 1.5 {
		t.Fatalf("avg = %v", v)
	}
	a.SetNamespace([]byte("w"))
	ok(t, a.Add(6))
	ok(t, a.MergeNamespaces(nil, []byte("w")))
	if v, _, _ := a.Get(); v != 3 {
		t.Fatalf("merged avg = %v", v)
	}
	ok(t, a.Clear())
	if _, found, _ := a.Get(); found {
		t.Fatal("not cleared")
	}
}

func testNamespaces(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()}))(t)
	v2 := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()}))(t)
	l := must(api.GetListState(b, api.ListStateDescriptor[int64]{Name: "l", Codec: api.Int64Codec()}))(t)
	setKey(b, "k")
	for i, ns := range []string{"", "w1", "w2"} {
		v.SetNamespace([]byte(ns))
		ok(t, v.Update(int64(i)))
		l.SetNamespace([]byte(ns))
		ok(t, l.Add(int64(i)))
		ok(t, l.Add(int64(i*10)))
	}
	for i, ns := range []string{"", "w1", "w2"} {
		v.SetNamespace([]byte(ns))
		if got := must(v.Value())(t); got != int64(i) {
			t.Fatalf("ns %q = %d", ns, got)
		}
		l.SetNamespace([]byte(ns))
		if got := must(l.Get())(t); !slices.Equal(got, []int64{int64(i), int64(i * 10)}) {
			t.Fatalf("list ns %q = %v", ns, got)
		}
	}
	// Handles keep their own namespace: v2 still sees the default one.
	if got := must(v2.Value())(t); got != 0 {
		t.Fatalf("second handle = %d, want 0", got)
	}
	v.SetNamespace([]byte("w1"))
	ok(t, v.Clear())
	v.SetNamespace([]byte("w2"))
	if got := must(v.Value())(t); got != 2 {
		t.Fatalf("clear of w1 hit w2: %d", got)
	}
	l.SetNamespace([]byte("w3"))
	ok(t, l.MergeNamespaces([]byte("w3"), []byte("w1"), []byte("w2")))
	if got := must(l.Get())(t); !slices.Equal(got, []int64{1, 10, 2, 20}) {
		t.Fatalf("merged list = %v", got)
	}
}

func fillMany(t *testing.T, b statebackend.Backend, n int) {
	t.Helper()
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()}))(t)
	m := must(api.GetMapState(b, api.MapStateDescriptor[int64, string]{Name: "m", KeyCodec: api.Int64Codec(), ValueCodec: api.StringCodec()}))(t)
	l := must(api.GetListState(b, api.ListStateDescriptor[int64]{Name: "l", Codec: api.Int64Codec()}))(t)
	for i := 0; i < n; i++ {
		setKey(b, fmt.Sprintf("key-%d", i))
		ok(t, v.Update(int64(i)))
		ok(t, m.Put(int64(i), "a"))
		ok(t, m.Put(-int64(i)-1, "b"))
		ok(t, l.Add(int64(i)))
		if i%10 == 0 {
			ok(t, b.RegisterEventTimeTimer(int64(i), []byte("ns")))
		}
	}
}

func testManyKeys(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	const n = 5000
	fillMany(t, b, n)
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()}))(t)
	m := must(api.GetMapState(b, api.MapStateDescriptor[int64, string]{Name: "m", KeyCodec: api.Int64Codec(), ValueCodec: api.StringCodec()}))(t)
	for i := 0; i < n; i++ {
		setKey(b, fmt.Sprintf("key-%d", i))
		if got := must(v.Value())(t); got != int64(i) {
			t.Fatalf("key-%d = %d", i, got)
		}
		if got := collectMap(t, m); len(got) != 2 || got[int64(i)] != "a" {
			t.Fatalf("key-%d map = %v", i, got)
		}
	}
	ok(t, b.Flush())
}

type canon struct {
	state              string
	kg                 int
	key, ns, uk, value string
}

func iterateAll(t *testing.T, b statebackend.Backend, r keygroup.Range) []canon {
	t.Helper()
	var out []canon
	lastKG := -1
	timers := false
	ok(t, b.Iterate(r, func(e statebackend.Entry) error {
		isTimer := strings.HasPrefix(e.State, "\x00")
		if !isTimer {
			if timers {
				t.Errorf("state entry after timers")
			}
			if e.KeyGroup < lastKG {
				t.Errorf("key group %d after %d: not in key-group order", e.KeyGroup, lastKG)
			}
			lastKG = e.KeyGroup
		} else {
			timers = true
		}
		if want := keygroup.Assign(e.Key, b.MaxParallelism()); e.KeyGroup != want {
			t.Errorf("entry %q key %q in key group %d, want %d", e.State, e.Key, e.KeyGroup, want)
		}
		if !r.Contains(e.KeyGroup) {
			t.Errorf("entry of key group %d outside %v", e.KeyGroup, r)
		}
		out = append(out, canon{e.State, e.KeyGroup, string(e.Key), string(e.Namespace), string(e.UserKey), string(e.Value)})
		return nil
	}))
	slices.SortFunc(out, func(a, b canon) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	return out
}

func testIterateIngest(t *testing.T, open opener) {
	src := open(t, statebackend.Options{})
	const n = 600
	fillMany(t, src, n)
	all := iterateAll(t, src, src.KeyGroups())
	// 3 states (value, 2 map entries, list) per key, plus timers.
	if want := n*4 + n/10; len(all) != want {
		t.Fatalf("iterated %d entries, want %d", len(all), want)
	}
	// Rescale to two halves: each ingests the full stream, keeps its range.
	halves := []keygroup.Range{keygroup.RangeFor(src.MaxParallelism(), 2, 0), keygroup.RangeFor(src.MaxParallelism(), 2, 1)}
	var union []canon
	for _, r := range halves {
		dst := open(t, statebackend.Options{KeyGroups: r})
		ok(t, dst.RestoreStates(src.States()))
		ok(t, src.Iterate(src.KeyGroups(), dst.Ingest))
		got := iterateAll(t, dst, dst.KeyGroups())
		want := iterateAll(t, src, r)
		if !slices.Equal(got, want) {
			t.Fatalf("range %v: ingested %d entries, source has %d", r, len(got), len(want))
		}
		union = append(union, got...)
		// The restored state is usable through the API, timers included.
		v := must(api.GetValueState(dst, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()}))(t)
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("key-%d", i)
			kg := keygroup.Assign([]byte(k), dst.MaxParallelism())
			if !r.Contains(kg) {
				continue
			}
			dst.SetCurrentKey([]byte(k), kg)
			if got := must(v.Value())(t); got != int64(i) {
				t.Fatalf("restored %s = %d", k, got)
			}
		}
		fired := 0
		ok(t, dst.AdvanceWatermark(math.MaxInt64, func(api.Timer) error { fired++; return nil }))
		wantFired := 0
		for _, c := range want {
			if c.state == statebackend.EventTimersState {
				wantFired++
			}
		}
		if fired != wantFired {
			t.Fatalf("restored timers fired %d, want %d", fired, wantFired)
		}
	}
	if len(union) != len(all) {
		t.Fatalf("halves hold %d entries, source %d", len(union), len(all))
	}
	// Unknown states are refused.
	dst := open(t, statebackend.Options{})
	err := dst.Ingest(statebackend.Entry{State: "nope", KeyGroup: 0})
	if !errors.Is(err, statebackend.ErrUnknownState) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("ingest of unknown state: %v", err)
	}
}

func testRedeclare(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "s", Codec: api.Int64Codec()}))(t)
	must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "s", Codec: api.Int64Codec()}))(t)
	_, err := api.GetListState(b, api.ListStateDescriptor[int64]{Name: "s", Codec: api.Int64Codec()})
	if !errors.Is(err, api.ErrStateConflict) || !strings.Contains(err.Error(), `"s"`) {
		t.Fatalf("kind change: %v", err)
	}
	_, err = api.GetValueState(b, api.ValueStateDescriptor[string]{Name: "s", Codec: api.StringCodec()})
	if !errors.Is(err, api.ErrStateConflict) || !strings.Contains(err.Error(), `"s"`) {
		t.Fatalf("codec change: %v", err)
	}
	_, err = api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "s", Codec: api.Int64Codec(), TTL: &api.TTLConfig{TTL: time.Second}})
	if !errors.Is(err, api.ErrStateConflict) {
		t.Fatalf("TTL added: %v", err)
	}
	_, err = api.GetMapState(b, api.MapStateDescriptor[string, int64]{Name: "s", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec()})
	if !errors.Is(err, api.ErrStateConflict) {
		t.Fatalf("map over value: %v", err)
	}
	if _, err := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "", Codec: api.Int64Codec()}); err == nil {
		t.Fatal("empty name accepted")
	}
	if _, err := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "x"}); err == nil {
		t.Fatal("nil codec accepted")
	}
	if _, err := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "x", Codec: api.Int64Codec(), TTL: &api.TTLConfig{}}); err == nil {
		t.Fatal("zero TTL accepted")
	}
}

// shortInt claims the int64 codec ID but writes one byte: reading its bytes
// with the real int64 codec fails.
type shortInt struct{}

func (shortInt) ID() string                                 { return "int64" }
func (shortInt) Encode(dst []byte, v int64) ([]byte, error) { return append(dst, byte(v)), nil }
func (shortInt) Decode(b []byte) (int64, error)             { return int64(b[0]), nil }

func testDecodeError(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	w := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "counter", Codec: shortInt{}}))(t)
	wm := must(api.GetMapState(b, api.MapStateDescriptor[int64, int64]{Name: "mp", KeyCodec: api.Int64Codec(), ValueCodec: shortInt{}}))(t)
	wl := must(api.GetListState(b, api.ListStateDescriptor[int64]{Name: "ls", Codec: shortInt{}}))(t)
	setKey(b, "user-42")
	ok(t, w.Update(3))
	ok(t, wm.Put(1, 3))
	ok(t, wl.Add(3))
	r := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "counter", Codec: api.Int64Codec()}))(t)
	rm := must(api.GetMapState(b, api.MapStateDescriptor[int64, int64]{Name: "mp", KeyCodec: api.Int64Codec(), ValueCodec: api.Int64Codec()}))(t)
	rl := must(api.GetListState(b, api.ListStateDescriptor[int64]{Name: "ls", Codec: api.Int64Codec()}))(t)
	check := func(what, name string, err error) {
		t.Helper()
		if !errors.Is(err, api.ErrStateDecode) || !errors.Is(err, api.ErrCodec) ||
			!strings.Contains(err.Error(), `"`+name+`"`) || !strings.Contains(err.Error(), `"user-42"`) {
			t.Fatalf("%s decode error must wrap ErrStateDecode and name state and key: %v", what, err)
		}
	}
	_, err := r.Value()
	check("value", "counter", err)
	_, _, err = rm.Get(1)
	check("map get", "mp", err)
	check("map range", "mp", rm.Range(func(int64, int64) bool { return true }))
	_, err = rl.Get()
	check("list", "ls", err)
}

type userV1 struct {
	Name string `json:"name"`
}

type userV2 struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

type userV3 struct {
	FullName string `json:"full_name"`
	Email    string `json:"email"`
}

func testCodecVersioning(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	v1 := must(api.GetValueState(b, api.ValueStateDescriptor[userV1]{Name: "user", Codec: &api.JSONCodec[userV1]{Name: "user"}}))(t)
	setKey(b, "k")
	ok(t, v1.Update(userV1{Name: "ann"}))

	// The type gains a field: same codec name, old bytes decode.
	v2 := must(api.GetValueState(b, api.ValueStateDescriptor[userV2]{Name: "user", Codec: &api.JSONCodec[userV2]{Name: "user"}}))(t)
	if got := must(v2.Value())(t); got != (userV2{Name: "ann"}) {
		t.Fatalf("v1 bytes as v2 = %+v", got)
	}
	setKey(b, "k2")
	ok(t, v2.Update(userV2{Name: "bob", Email: "b@x"}))

	// A rename needs a version bump and an upgrade function.
	c3 := &api.JSONCodec[userV3]{Name: "user", Version: 1, Upgrade: func(from uint8, data []byte) ([]byte, error) {
		var old userV2
		if err := json.Unmarshal(data, &old); err != nil {
			return nil, err
		}
		return json.Marshal(userV3{FullName: old.Name, Email: old.Email})
	}}
	v3 := must(api.GetValueState(b, api.ValueStateDescriptor[userV3]{Name: "user", Codec: c3}))(t)
	if got := must(v3.Value())(t); got != (userV3{FullName: "bob", Email: "b@x"}) {
		t.Fatalf("upgraded = %+v", got)
	}
	ok(t, v3.Update(userV3{FullName: "bob b"}))
	// Bytes from the future are refused with a clear error.
	if _, err := v2.Value(); !errors.Is(err, api.ErrStateDecode) || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("old codec reading new version: %v", err)
	}
}

func testNoKeyAndRange(t *testing.T, open opener) {
	b := open(t, statebackend.Options{MaxParallelism: 128, KeyGroups: keygroup.Range{Start: 10, End: 20}})
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()}))(t)
	if err := v.Update(1); !errors.Is(err, statebackend.ErrNoCurrentKey) {
		t.Fatalf("no key: %v", err)
	}
	if err := b.RegisterEventTimeTimer(1, nil); !errors.Is(err, statebackend.ErrNoCurrentKey) {
		t.Fatalf("timer without key: %v", err)
	}
	b.SetCurrentKey([]byte("x"), 21)
	if err := v.Update(1); !errors.Is(err, statebackend.ErrKeyGroupOutOfRange) {
		t.Fatalf("out of range: %v", err)
	}
	if err := b.RegisterEventTimeTimer(1, nil); !errors.Is(err, statebackend.ErrKeyGroupOutOfRange) {
		t.Fatalf("timer out of range: %v", err)
	}
	b.SetCurrentKey([]byte("x"), 20)
	ok(t, v.Update(1))
}

func ttl(d time.Duration, u api.TTLUpdate, vis api.TTLVisibility) *api.TTLConfig {
	return &api.TTLConfig{TTL: d, Update: u, Visibility: vis}
}

func testTTLValue(t *testing.T, open opener) {
	clk := NewFakeClock(1000)
	b := open(t, statebackend.Options{Clock: clk})
	cw := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "cw", Codec: api.Int64Codec(), Default: -1,
		TTL: ttl(100*time.Millisecond, api.OnCreateAndWrite, api.NeverReturnExpired)}))(t)
	rw := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "rw", Codec: api.Int64Codec(), Default: -1,
		TTL: ttl(100*time.Millisecond, api.OnReadAndWrite, api.NeverReturnExpired)}))(t)
	rx := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "rx", Codec: api.Int64Codec(), Default: -1,
		TTL: ttl(100*time.Millisecond, api.OnCreateAndWrite, api.ReturnExpiredIfNotCleanedUp)}))(t)
	setKey(b, "k")
	ok(t, cw.Update(1))
	ok(t, rw.Update(2))
	ok(t, rx.Update(3))
	clk.Set(1099)
	if must(cw.Value())(t) != 1 || must(rw.Value())(t) != 2 { // rw refreshed to 1099
		t.Fatal("expired early")
	}
	clk.Set(1100)
	if got := must(cw.Value())(t); got != -1 {
		t.Fatalf("OnCreateAndWrite value alive at its TTL: %d", got)
	}
	if got := must(rx.Value())(t); got != 3 {
		t.Fatalf("ReturnExpiredIfNotCleanedUp: first read of expired = %d, want 3", got)
	}
	if got := must(rx.Value())(t); got != -1 {
		t.Fatalf("ReturnExpiredIfNotCleanedUp: expired value not cleaned up by the read: %d", got)
	}
	clk.Set(1198)
	if got := must(rw.Value())(t); got != 2 {
		t.Fatalf("OnReadAndWrite value expired although read at 1099: %d", got)
	}
	clk.Set(1298)
	if got := must(rw.Value())(t); got != -1 {
		t.Fatalf("OnReadAndWrite value alive 100ms after last read: %d", got)
	}
	// A write refreshes.
	ok(t, cw.Update(5))
	clk.Set(1397)
	ok(t, cw.Update(6))
	clk.Set(1496)
	if got := must(cw.Value())(t); got != 6 {
		t.Fatalf("rewritten value = %d", got)
	}
}

func testTTLList(t *testing.T, open opener) {
	clk := NewFakeClock(0)
	b := open(t, statebackend.Options{Clock: clk})
	l := must(api.GetListState(b, api.ListStateDescriptor[string]{Name: "l", Codec: api.StringCodec(),
		TTL: ttl(10*time.Millisecond, api.OnCreateAndWrite, api.NeverReturnExpired)}))(t)
	lr := must(api.GetListState(b, api.ListStateDescriptor[string]{Name: "lr", Codec: api.StringCodec(),
		TTL: ttl(10*time.Millisecond, api.OnReadAndWrite, api.ReturnExpiredIfNotCleanedUp)}))(t)
	setKey(b, "k")
	ok(t, l.Add("old"))
	ok(t, lr.Add("old"))
	clk.Set(5)
	ok(t, l.Add("new"))
	ok(t, lr.Add("new"))
	clk.Set(10)
	if got := must(l.Get())(t); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("per-element TTL: %q", got)
	}
	if got := must(lr.Get())(t); !slices.Equal(got, []string{"old", "new"}) {
		t.Fatalf("ReturnExpired list: %q", got)
	}
	if got := must(lr.Get())(t); !slices.Equal(got, []string{"new"}) { // "new" refreshed at 10
		t.Fatalf("ReturnExpired list after cleanup: %q", got)
	}
	clk.Set(19)
	if got := must(lr.Get())(t); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("OnReadAndWrite list element expired: %q", got)
	}
	clk.Set(40)
	if got := must(l.Get())(t); got != nil {
		t.Fatalf("all expired: %q", got)
	}
	ok(t, l.Add("again"))
	if got := must(l.Get())(t); !slices.Equal(got, []string{"again"}) {
		t.Fatalf("after expiry: %q", got)
	}
}

func testTTLMap(t *testing.T, open opener) {
	clk := NewFakeClock(0)
	b := open(t, statebackend.Options{Clock: clk})
	m := must(api.GetMapState(b, api.MapStateDescriptor[string, int64]{Name: "m", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec(),
		TTL: ttl(10*time.Millisecond, api.OnReadAndWrite, api.NeverReturnExpired)}))(t)
	setKey(b, "k")
	ok(t, m.Put("a", 1))
	clk.Set(5)
	ok(t, m.Put("b", 2))
	clk.Set(9)
	if _, found, _ := m.Get("a"); !found { // refreshes a to 9
		t.Fatal("a expired early")
	}
	clk.Set(15)
	if got := collectMap(t, m); len(got) != 1 || got["a"] != 1 {
		t.Fatalf("at 15: %v", got)
	}
	clk.Set(30)
	if got := collectMap(t, m); len(got) != 0 {
		t.Fatalf("at 30: %v", got)
	}
	if e := must(m.IsEmpty())(t); !e {
		t.Fatal("expired entries not cleaned up by iteration")
	}
}

func countEntries(t *testing.T, b statebackend.Backend, state string) int {
	n := 0
	ok(t, b.Iterate(b.KeyGroups(), func(e statebackend.Entry) error {
		if e.State == state {
			n++
		}
		return nil
	}))
	return n
}

func testTTLSweeps(t *testing.T, open opener) {
	clk := NewFakeClock(0)
	b := open(t, statebackend.Options{Clock: clk, MaxParallelism: 8})
	cfg := ttl(10*time.Millisecond, api.OnCreateAndWrite, api.ReturnExpiredIfNotCleanedUp)
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec(), TTL: cfg}))(t)
	m := must(api.GetMapState(b, api.MapStateDescriptor[int64, int64]{Name: "m", KeyCodec: api.Int64Codec(), ValueCodec: api.Int64Codec(), TTL: cfg}))(t)
	l := must(api.GetListState(b, api.ListStateDescriptor[int64]{Name: "l", Codec: api.Int64Codec(), TTL: cfg}))(t)
	must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "plain", Codec: api.Int64Codec()}))(t)
	write := func(from, to int) {
		for i := from; i < to; i++ {
			setKey(b, fmt.Sprint(i))
			ok(t, v.Update(int64(i)))
			ok(t, m.Put(int64(i), 1))
			ok(t, l.Add(1))
		}
	}
	write(0, 200)
	clk.Set(5)
	write(200, 300)
	clk.Set(12)
	ok(t, b.CleanupExpired())
	for _, s := range []string{"v", "m", "l"} {
		if n := countEntries(t, b, s); n != 100 {
			t.Fatalf("after full sweep %s has %d entries, want 100", s, n)
		}
	}
	// Incremental sweep: 3 TTL states x 8 key groups = 24 steps per round.
	clk.Set(100)
	steps := 0
	for {
		done, err := b.SweepExpired(5)
		ok(t, err)
		steps++
		if done {
			break
		}
		if steps > 10 {
			t.Fatal("incremental sweep never completes a round")
		}
	}
	if steps != 5 && steps != 6 {
		t.Fatalf("round took %d calls of 5, want 5 or 6", steps)
	}
	for _, s := range []string{"v", "m", "l"} {
		if n := countEntries(t, b, s); n != 0 {
			t.Fatalf("after incremental sweep %s has %d entries", s, n)
		}
	}
}

func testTTLEventTime(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec(), Default: -1,
		TTL: &api.TTLConfig{TTL: 10 * time.Millisecond, Time: api.TTLEventTime}}))(t)
	nop := func(api.Timer) error { return nil }
	ok(t, b.AdvanceWatermark(100, nop))
	setKey(b, "k")
	ok(t, v.Update(1))
	ok(t, b.AdvanceWatermark(109, nop))
	if must(v.Value())(t) != 1 {
		t.Fatal("expired before the watermark passed")
	}
	ok(t, b.AdvanceWatermark(110, nop))
	if got := must(v.Value())(t); got != -1 {
		t.Fatalf("alive at watermark 110: %d", got)
	}
}

type fired struct {
	ts  int64
	key string
	ns  string
}

func cmpFired(a, b fired) int {
	if a.ts != b.ts {
		return cmp.Compare(a.ts, b.ts)
	}
	if c := strings.Compare(a.key, b.key); c != 0 {
		return c
	}
	return strings.Compare(a.ns, b.ns)
}

func testTimersOrder(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	v := must(api.GetValueState(b, api.ValueStateDescriptor[string]{Name: "who", Codec: api.StringCodec()}))(t)
	reg := []fired{{30, "c", ""}, {10, "a", "w1"}, {20, "b", ""}, {10, "b", ""}, {40, "a", ""}, {-5, "z", ""}}
	for _, r := range reg {
		setKey(b, r.key)
		ok(t, v.Update(r.key))
		ok(t, b.RegisterEventTimeTimer(r.ts, []byte(r.ns)))
	}
	if ts, found, err := b.NextTimer(api.EventTime); err != nil || !found || ts != -5 {
		t.Fatalf("NextTimer = %d %v %v", ts, found, err)
	}
	var got []fired
	fire := func(tm api.Timer) error {
		if tm.Domain != api.EventTime {
			t.Errorf("domain %v", tm.Domain)
		}
		if !bytes.Equal(b.CurrentKey(), tm.Key) {
			t.Errorf("timer key %q not current (%q)", tm.Key, b.CurrentKey())
		}
		if who := must(v.Value())(t); who != string(tm.Key) {
			t.Errorf("state under timer key %q = %q", tm.Key, who)
		}
		got = append(got, fired{tm.Timestamp, string(tm.Key), string(tm.Namespace)})
		if tm.Timestamp == 20 {
			// A due timer registered while firing fires in the same advance.
			ok(t, b.RegisterEventTimeTimer(25, []byte("late")))
			ok(t, b.RegisterEventTimeTimer(1000, nil))
		}
		return nil
	}
	ok(t, b.AdvanceWatermark(30, fire))
	want := []fired{{-5, "z", ""}, {10, "a", "w1"}, {10, "b", ""}, {20, "b", ""}, {25, "b", "late"}, {30, "c", ""}}
	// Timers of equal timestamp fire in key-group order, which is not
	// alphabetical: compare them as a set.
	for i := 1; i < len(got); i++ {
		if got[i].ts < got[i-1].ts {
			t.Fatalf("fired out of order: %v", got)
		}
	}
	slices.SortFunc(got, func(a, b fired) int { return cmpFired(a, b) })
	if !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if b.CurrentWatermark() != 30 {
		t.Fatalf("watermark %d", b.CurrentWatermark())
	}
	got = nil
	ok(t, b.AdvanceWatermark(20, fire)) // watermarks never go back
	if len(got) != 0 {
		t.Fatalf("fired on a lower watermark: %v", got)
	}
	ok(t, b.AdvanceWatermark(40, fire))
	if !slices.Equal(got, []fired{{40, "a", ""}}) {
		t.Fatalf("fired %v", got)
	}
	errStop := errors.New("stop")
	if err := b.AdvanceWatermark(math.MaxInt64, func(api.Timer) error { return errStop }); !errors.Is(err, errStop) {
		t.Fatalf("fire error not returned: %v", err)
	}
}

func testTimersDedupDelete(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	setKey(b, "k")
	for i := 0; i < 3; i++ {
		ok(t, b.RegisterEventTimeTimer(10, []byte("ns")))
	}
	ok(t, b.RegisterEventTimeTimer(10, []byte("other")))
	ok(t, b.RegisterEventTimeTimer(11, []byte("ns")))
	ok(t, b.DeleteEventTimeTimer(11, []byte("ns")))
	ok(t, b.DeleteEventTimeTimer(12, []byte("never")))
	ok(t, b.RegisterProcessingTimeTimer(10, []byte("ns"))) // other domain: independent
	setKey(b, "k2")
	ok(t, b.RegisterEventTimeTimer(10, []byte("ns")))
	var got []fired
	ok(t, b.AdvanceWatermark(100, func(tm api.Timer) error {
		got = append(got, fired{tm.Timestamp, string(tm.Key), string(tm.Namespace)})
		return nil
	}))
	want := []fired{{10, "k", "ns"}, {10, "k", "other"}, {10, "k2", "ns"}}
	slices.SortFunc(got, cmpFired)
	if !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if ts, found, _ := b.NextTimer(api.ProcessingTime); !found || ts != 10 {
		t.Fatalf("processing timer lost: %d %v", ts, found)
	}
}

func testTimersProcessingTime(t *testing.T, open opener) {
	clk := NewFakeClock(5000)
	b := open(t, statebackend.Options{Clock: clk})
	if b.CurrentProcessingTime() != 5000 {
		t.Fatalf("CurrentProcessingTime = %d", b.CurrentProcessingTime())
	}
	setKey(b, "k")
	ok(t, b.RegisterProcessingTimeTimer(5100, nil))
	ok(t, b.RegisterProcessingTimeTimer(5050, nil))
	ok(t, b.RegisterEventTimeTimer(0, nil))
	var got []int64
	fire := func(tm api.Timer) error {
		if tm.Domain != api.ProcessingTime {
			t.Errorf("event timer fired by processing time")
		}
		got = append(got, tm.Timestamp)
		return nil
	}
	ok(t, b.AdvanceProcessingTime(5049, fire))
	ok(t, b.AdvanceProcessingTime(5100, fire))
	if !slices.Equal(got, []int64{5050, 5100}) {
		t.Fatalf("fired %v", got)
	}
	if _, found, _ := b.NextTimer(api.ProcessingTime); found {
		t.Fatal("processing timers left")
	}
}

func testTimersMany(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	const n = 3000
	// Register in a scrambled order; delete every third.
	for i := 0; i < n; i++ {
		j := (i * 7919) % n
		setKey(b, fmt.Sprint(j%97))
		ok(t, b.RegisterEventTimeTimer(int64(j), nil))
	}
	for j := 0; j < n; j += 3 {
		setKey(b, fmt.Sprint(j%97))
		ok(t, b.DeleteEventTimeTimer(int64(j), nil))
	}
	last, count := int64(math.MinInt64), 0
	step := func(tm api.Timer) error {
		if tm.Timestamp < last {
			return fmt.Errorf("timer %d after %d", tm.Timestamp, last)
		}
		if tm.Timestamp%3 == 0 {
			return fmt.Errorf("deleted timer %d fired", tm.Timestamp)
		}
		if string(tm.Namespace) != "extra" && string(tm.Key) != fmt.Sprint(tm.Timestamp%97) {
			return fmt.Errorf("timer %d has key %q", tm.Timestamp, tm.Key)
		}
		last = tm.Timestamp
		count++
		// Registering below the fired range and far above keeps the head
		// cache honest.
		if tm.Timestamp == 1000 {
			ok(t, b.RegisterEventTimeTimer(1001, []byte("extra")))
			ok(t, b.RegisterEventTimeTimer(n+5, []byte("extra")))
		}
		return nil
	}
	for wm := int64(0); wm <= n+250; wm += 250 {
		ok(t, b.AdvanceWatermark(wm, step))
	}
	if want := n - (n+2)/3 + 2; count != want {
		t.Fatalf("fired %d timers, want %d", count, want)
	}
}
