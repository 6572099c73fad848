package datagen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
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

func run(t *testing.T, cfg map[string]any, sub, par int) []api.Record {
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

func TestDeterministicAndSplit(t *testing.T) {
	cfg := map[string]any{"count": 1000, "keys": 10, "seed": 3}
	a0, a1 := run(t, cfg, 0, 2), run(t, cfg, 1, 2)
	b0 := run(t, cfg, 0, 2)
	if len(a0)+len(a1) != 1000 {
		t.Fatalf("got %d records", len(a0)+len(a1))
	}
	for i := range a0 {
		if !bytes.Equal(a0[i].Value, b0[i].Value) {
			t.Fatalf("run differs at %d: %s vs %s", i, a0[i].Value, b0[i].Value)
		}
	}
	single := run(t, cfg, 0, 1)
	keys := map[string]bool{}
	for _, r := range single {
		var v struct {
			Key   string
			Seq   int64
			Value int64
			Ts    int64
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("%s: %v", r.Value, err)
		}
		keys[v.Key] = true
		if v.Ts != v.Seq || r.Timestamp != v.Seq || v.Value < 0 || v.Value >= 1000 {
			t.Fatalf("bad record %s (ts %d)", r.Value, r.Timestamp)
		}
		other := a0
		if v.Seq%2 == 1 {
			other = a1
		}
		if !bytes.Equal(other[v.Seq/2].Value, r.Value) {
			t.Fatalf("parallel split differs for seq %d", v.Seq)
		}
	}
	if len(keys) != 10 {
		t.Fatalf("%d keys, want 10", len(keys))
	}
	if other := run(t, map[string]any{"count": 10, "keys": 10, "seed": 4}, 0, 1); bytes.Equal(other[1].Value, single[1].Value) && bytes.Equal(other[2].Value, single[2].Value) {
		t.Fatal("seed has no effect")
	}
}

func TestRateAndRestore(t *testing.T) {
	start := time.Now()
	recs := run(t, map[string]any{"count": 100, "rate": 400}, 0, 1)
	if d := time.Since(start); d < 200*time.Millisecond || len(recs) != 100 {
		t.Fatalf("100 records at 400/s took %s (%d records)", d, len(recs))
	}
	if recs[40].Timestamp != 100 {
		t.Fatalf("ts of record 40 at rate 400 = %d, want 100", recs[40].Timestamp)
	}
	typ := Type()
	c, _ := typ.DecodeConfig(map[string]any{"count": 10})
	s, _ := typ.NewSource(c)
	if err := s.Restore([]byte("7")); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(testCtx{sub: 0, par: 1, clock: wall{}}); err != nil {
		t.Fatal(err)
	}
	out := &sliceOut{}
	if _, err := s.Next(out); err != nil {
		t.Fatal(err)
	}
	if len(out.recs) != 3 || out.recs[0].Timestamp != 7 {
		t.Fatalf("after restore got %d records from %d", len(out.recs), out.recs[0].Timestamp)
	}
	pos, _ := s.Position()
	if string(pos) != "10" {
		t.Fatalf("position %s", pos)
	}
	if err := s.Restore([]byte("x")); err == nil {
		t.Fatal("bad position accepted")
	}
	if _, err := typ.DecodeConfig(map[string]any{"keys": 0}); err == nil {
		t.Fatal("keys 0 accepted")
	}
}

func newSrc(t *testing.T, cfg map[string]any) *Source {
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
	return s.(*Source)
}

// seqs collects the seq field of records.
func seqs(t *testing.T, recs []api.Record, into map[int64]int) {
	t.Helper()
	for _, r := range recs {
		var v struct{ Seq int64 }
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatal(err)
		}
		into[v.Seq]++
	}
}

// TestSplitsRescale runs datagen at parallelism 1, then 3, then 2, each
// time restoring the previous attempt's splits the way the runtime does
// (concatenated in subtask order, divided when fewer than the subtasks,
// assigned round robin): every record number is generated exactly once.
func TestSplitsRescale(t *testing.T) {
	const count = 5000
	cfg := map[string]any{"count": count, "keys": 7}
	seen := map[int64]int{}
	// step runs par subtasks from splits (nil: a fresh start) for batches
	// Next calls each (0: to the end) and returns their splits.
	step := func(splits [][]byte, fresh bool, par, batches int) [][]byte {
		if !fresh && len(splits) < par {
			var err error
			if splits, err = newSrc(t, cfg).DivideSplits(splits, par); err != nil {
				t.Fatal(err)
			}
		}
		var next [][]byte
		for i := 0; i < par; i++ {
			s := newSrc(t, cfg)
			if err := s.Open(testCtx{sub: i, par: par, clock: wall{}}); err != nil {
				t.Fatal(err)
			}
			if !fresh {
				if err := s.RestoreSplits(api.AssignSplits(splits, i, par)); err != nil {
					t.Fatal(err)
				}
			}
			out := &sliceOut{}
			for b := 0; batches == 0 || b < batches; b++ {
				st, err := s.Next(out)
				if err != nil {
					t.Fatal(err)
				}
				if st.End {
					break
				}
			}
			seqs(t, out.recs, seen)
			sp, err := s.Splits()
			if err != nil {
				t.Fatal(err)
			}
			next = append(next, sp...)
		}
		return next
	}
	s1 := step(nil, true, 1, 2)
	if len(s1) != 1 || string(s1[0]) != `{"v":1,"stride":1,"next":1024}` {
		t.Fatalf("splits after 1024 records at parallelism 1: %q", s1)
	}
	s3 := step(s1, false, 3, 1)
	if len(s3) != 3 {
		t.Fatalf("splits at parallelism 3: %q, want 3 (one divided into three)", s3)
	}
	if rest := step(s3, false, 2, 0); len(rest) != 0 {
		t.Fatalf("splits left after reading to the end: %q", rest)
	}
	for n := int64(0); n < count; n++ {
		if seen[n] != 1 {
			t.Fatalf("record %d generated %d times", n, seen[n])
		}
	}
	if len(seen) != count {
		t.Fatalf("%d distinct records, want %d", len(seen), count)
	}
}

func TestSplitsDivideAndErrors(t *testing.T) {
	s := newSrc(t, map[string]any{"count": 10})
	got, err := s.DivideSplits([][]byte{[]byte(`{"v":1,"stride":2,"next":7}`)}, 3)
	if err != nil {
		t.Fatal(err)
	}
	// {stride 6}: next 7, 9 and 11; 11 is past count 10 and dropped.
	if len(got) != 2 || string(got[0]) != `{"v":1,"stride":6,"next":7}` || string(got[1]) != `{"v":1,"stride":6,"next":9}` {
		t.Fatalf("divided: %q", got)
	}
	if err := s.RestoreSplits([][]byte{[]byte(`{"v":2,"stride":1,"next":0}`)}); err == nil {
		t.Fatal("split of a future format version accepted")
	}
	if err := s.RestoreSplits([][]byte{[]byte(`{"v":1,"stride":0,"next":0}`)}); err == nil {
		t.Fatal("split with stride 0 accepted")
	}
	// Unbounded with no split: idle, not ended.
	u := newSrc(t, map[string]any{})
	if err := u.Open(testCtx{sub: 0, par: 1, clock: wall{}}); err != nil {
		t.Fatal(err)
	}
	if err := u.RestoreSplits(nil); err != nil {
		t.Fatal(err)
	}
	out := &idleOut{}
	st, err := u.Next(out)
	if err != nil || st.End || st.WaitUntil.IsZero() || out.idle != 1 {
		t.Fatalf("unbounded source without splits: %+v, %v, idle marked %d times", st, err, out.idle)
	}
	// A position exists only for the initial sequence.
	b := newSrc(t, map[string]any{"count": 10})
	if err := b.Open(testCtx{sub: 0, par: 1, clock: wall{}}); err != nil {
		t.Fatal(err)
	}
	if err := b.RestoreSplits([][]byte{[]byte(`{"v":1,"stride":3,"next":0}`), []byte(`{"v":1,"stride":3,"next":1}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Position(); err == nil {
		t.Fatal("position of two sequences")
	}
	recs := &sliceOut{}
	if st, err := b.Next(recs); err != nil || !st.End {
		t.Fatalf("two sequences to count 10: %+v %v", st, err)
	}
	var order []int64
	for _, r := range recs.recs {
		order = append(order, r.Timestamp)
	}
	if want := []int64{0, 1, 3, 4, 6, 7, 9}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("records of two sequences in order %v, want %v", order, want)
	}
}

type idleOut struct {
	sliceOut
	idle int
}

func (o *idleOut) MarkIdle() { o.idle++ }
