package nexmark

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
)

type testCtx struct {
	sub, par int
	clock    api.Clock
}

func (c testCtx) Info() api.TaskInfo {
	return api.TaskInfo{SubtaskIndex: c.sub, Parallelism: c.par}
}
func (c testCtx) Logger() *slog.Logger           { return slog.New(slog.DiscardHandler) }
func (c testCtx) Metrics() prometheus.Registerer { return prometheus.NewRegistry() }
func (c testCtx) Clock() api.Clock               { return c.clock }
func (c testCtx) Done() <-chan struct{}          { return nil }
func (c testCtx) DataDir() string                { return "" }

type wall struct{}

func (wall) Now() time.Time { return time.Now() }

type sliceOut struct{ recs []api.Record }

func (o *sliceOut) Collect(r api.Record) {
	o.recs = append(o.recs, api.Record{Value: bytes.Clone(r.Value), Timestamp: r.Timestamp})
}
func (o *sliceOut) EmitWatermark(int64) {}
func (o *sliceOut) MarkIdle()           {}

func run(t testing.TB, cfg map[string]any, sub, par int) []api.Record {
	t.Helper()
	typ := Type()
	c, err := typ.DecodeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := typ.NewSource(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(testCtx{sub: sub, par: par, clock: wall{}}); err != nil {
		t.Fatal(err)
	}
	out := &sliceOut{}
	for {
		st, err := s.Next(out)
		if err != nil {
			t.Fatal(err)
		}
		if st.End {
			return out.recs
		}
		if !st.WaitUntil.IsZero() {
			time.Sleep(time.Until(st.WaitUntil)) // the rate: the source asked to be called again then
		}
	}
}

func values(recs []api.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

// TestDeterministicAndSplit: equal seeds give equal events, any
// parallelism generates the same events, and another seed others.
func TestDeterministicAndSplit(t *testing.T) {
	cfg := map[string]any{"count": 3000, "seed": 7}
	one := values(run(t, cfg, 0, 1))
	if len(one) != 3000 {
		t.Fatalf("got %d events", len(one))
	}
	if again := values(run(t, cfg, 0, 1)); !slices.Equal(one, again) {
		t.Fatal("two runs with the same seed differ")
	}
	var three []string
	for s := range 3 {
		part := values(run(t, cfg, s, 3))
		for i, v := range part { // subtask s emits numbers s, s+3, ... in order
			if one[s+3*i] != v {
				t.Fatalf("subtask %d event %d differs from event %d at parallelism 1", s, i, s+3*i)
			}
		}
		three = append(three, part...)
	}
	sort.Strings(three)
	sorted := slices.Clone(one)
	sort.Strings(sorted)
	if !slices.Equal(sorted, three) {
		t.Fatal("parallelism 3 generates other events than parallelism 1")
	}
	other := values(run(t, map[string]any{"count": 3000, "seed": 8}, 0, 1))
	if slices.Equal(one, other) {
		t.Fatal("seeds 7 and 8 give the same events")
	}
}

// TestModel checks the JSON against the model and the model's rules:
// proportions 1:3:46, ids, event times at the configured rate, and that
// bids refer to auctions and people that exist or will soon.
func TestModel(t *testing.T) {
	const n = 5000
	recs := run(t, map[string]any{"count": n, "rate": 1000, "baseTime": 0}, 0, 1)
	p := Params{Rate: 1000, OutOfOrder: 1}
	kinds := [3]int{}
	var maxPerson, maxAuction int64
	for i, r := range recs {
		var m map[string]any
		if err := json.Unmarshal(r.Value, &m); err != nil {
			t.Fatalf("event %d: %s: %v", i, r.Value, err)
		}
		ev := Generate(&p, int64(i))
		if got := string(AppendJSON(nil, &ev)); got != string(r.Value) {
			t.Fatalf("event %d: source wrote %s, model gives %s", i, r.Value, got)
		}
		kind := int(m["event_type"].(float64))
		kinds[kind]++
		if want := []int{KindPerson, KindAuction, KindAuction, KindAuction}; i%50 < 4 && kind != want[i%50] || i%50 >= 4 && kind != KindBid {
			t.Fatalf("event %d has kind %d", i, kind)
		}
		if ts := int64(m["dateTime"].(float64)); ts != int64(i) || r.Timestamp != ts {
			t.Fatalf("event %d: dateTime %d, timestamp %d, want %d (1000 events/s)", i, ts, r.Timestamp, i)
		}
		switch kind {
		case KindPerson:
			id := int64(m["id"].(float64))
			if id != FirstPersonID+int64(i/50) {
				t.Fatalf("person %d has id %d", i, id)
			}
			maxPerson = id
		case KindAuction:
			id := int64(m["id"].(float64))
			if id != FirstAuctionID+int64(i/50*3+i%50-1) {
				t.Fatalf("auction %d has id %d", i, id)
			}
			if exp := int64(m["expires"].(float64)); exp <= r.Timestamp {
				t.Fatalf("auction %d expires at %d, before it starts (%d)", i, exp, r.Timestamp)
			}
			if c := int64(m["category"].(float64)); c < FirstCategoryID || c >= FirstCategoryID+numCategories {
				t.Fatalf("auction %d has category %d", i, c)
			}
			maxAuction = id
		case KindBid:
			a, b := int64(m["auction"].(float64)), int64(m["bidder"].(float64))
			if a < FirstAuctionID || a > maxAuction+auctionIDLead {
				t.Fatalf("bid %d on auction %d (latest %d)", i, a, maxAuction)
			}
			if b < FirstPersonID || b > maxPerson+personIDLead+1 {
				t.Fatalf("bid %d by person %d (latest %d)", i, b, maxPerson)
			}
			if m["price"].(float64) < 100 {
				t.Fatalf("bid %d: price %v", i, m["price"])
			}
		}
	}
	if kinds != [3]int{100, 300, 4600} {
		t.Fatalf("kinds %v, want [100 300 4600]", kinds)
	}
}

// TestOutOfOrder: with outOfOrder 10 the events of each group of 10 are a
// permutation of the in-order ones, event times go back within a group,
// and never below the group's first time.
func TestOutOfOrder(t *testing.T) {
	inOrder := values(run(t, map[string]any{"count": 1000, "rate": 1000}, 0, 1))
	recs := run(t, map[string]any{"count": 1000, "rate": 1000, "outOfOrder": 10}, 0, 1)
	shuffled := values(recs)
	back := 0
	for g := 0; g < 1000; g += 10 {
		a, b := slices.Clone(inOrder[g:g+10]), slices.Clone(shuffled[g:g+10])
		sort.Strings(a)
		sort.Strings(b)
		if !slices.Equal(a, b) {
			t.Fatalf("group %d is not a permutation of the in-order events", g/10)
		}
		for i := g; i < g+10; i++ {
			if recs[i].Timestamp < recs[g].Timestamp-1 {
				t.Fatalf("event %d at %d, before its group's first event (%d)", i, recs[i].Timestamp, recs[g].Timestamp)
			}
			if i > g && recs[i].Timestamp < recs[i-1].Timestamp {
				back++
			}
		}
	}
	if back == 0 || slices.Equal(inOrder, shuffled) {
		t.Fatal("outOfOrder 10 generated the events in order")
	}
}

// TestRescale takes the splits of 2 subtasks midway, divides them over 5,
// and checks that the union of everything emitted is every event once.
func TestRescale(t *testing.T) {
	const n = 2000
	typ := Type()
	cfg, _ := typ.DecodeConfig(map[string]any{"count": n})
	var all []string
	var splits [][]byte
	for sub := range 2 {
		s, _ := typ.NewSource(cfg)
		if err := s.Open(testCtx{sub: sub, par: 2, clock: wall{}}); err != nil {
			t.Fatal(err)
		}
		out := &sliceOut{}
		for range 2 { // 2 batches of 256
			if _, err := s.Next(out); err != nil {
				t.Fatal(err)
			}
		}
		all = append(all, values(out.recs)...)
		sp, err := s.(api.SplitSource).Splits()
		if err != nil {
			t.Fatal(err)
		}
		splits = append(splits, sp...)
	}
	for sub := range 5 {
		s, _ := typ.NewSource(cfg)
		divided, err := s.(api.SplitDivider).DivideSplits(splits, 5)
		if err != nil {
			t.Fatal(err)
		}
		var mine [][]byte
		for k, sp := range divided {
			if k%5 == sub {
				mine = append(mine, sp)
			}
		}
		if err := s.Open(testCtx{sub: sub, par: 5, clock: wall{}}); err != nil {
			t.Fatal(err)
		}
		if err := s.(api.SplitSource).RestoreSplits(mine); err != nil {
			t.Fatal(err)
		}
		out := &sliceOut{}
		for {
			st, err := s.Next(out)
			if err != nil {
				t.Fatal(err)
			}
			if st.End {
				break
			}
		}
		all = append(all, values(out.recs)...)
	}
	want := values(run(t, map[string]any{"count": n}, 0, 1))
	sort.Strings(all)
	sort.Strings(want)
	if !slices.Equal(all, want) {
		t.Fatalf("after rescaling 2 -> 5: %d events, want each of %d once", len(all), n)
	}
}

type countOut struct{ n int }

func (o *countOut) Collect(api.Record)  { o.n++ }
func (o *countOut) EmitWatermark(int64) {}
func (o *countOut) MarkIdle()           {}

// TestNoAllocations: generating events allocates nothing once warm.
func TestNoAllocations(t *testing.T) {
	typ := Type()
	cfg, _ := typ.DecodeConfig(map[string]any{})
	s, _ := typ.NewSource(cfg)
	if err := s.Open(testCtx{sub: 0, par: 1, clock: wall{}}); err != nil {
		t.Fatal(err)
	}
	out := &countOut{}
	_, _ = s.Next(out)
	if a := testing.AllocsPerRun(20, func() { _, _ = s.Next(out) }); a != 0 {
		t.Fatalf("Next allocates %v times per batch of %d events", a, maxBatch)
	}
}

// BenchmarkGenerate is the source alone: events per second per core.
func BenchmarkGenerate(b *testing.B) {
	typ := Type()
	cfg, _ := typ.DecodeConfig(map[string]any{"count": b.N})
	s, _ := typ.NewSource(cfg)
	if err := s.Open(testCtx{sub: 0, par: 1, clock: wall{}}); err != nil {
		b.Fatal(err)
	}
	out := &countOut{}
	b.ReportAllocs()
	b.ResetTimer()
	for out.n < b.N {
		if st, err := s.Next(out); err != nil || st.End {
			break
		}
	}
}
