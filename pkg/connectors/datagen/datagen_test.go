package datagen

import (
	"bytes"
	"encoding/json"
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
			time.Sleep(time.Until(st.WaitUntil))
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
