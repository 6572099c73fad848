package typed_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/typed"
	"github.com/flowrt/flow/pkg/keygroup"
)

// The same logic twice, on raw []byte records and as a typed function: a
// per-key count in a ValueState[int64], the input decoded from JSON and
// the output encoded as JSON.

type benchIn struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
}

type benchOut struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
	Value int64  `json:"value"`
}

type rawCount struct {
	count *api.ValueState[int64]
}

func (o *rawCount) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	o.count, err = api.GetValueState(store, api.ValueStateDescriptor[int64]{Name: "count", Codec: api.Int64Codec()})
	return err
}

func (o *rawCount) ProcessRecord(r api.Record, out api.Collector) error {
	var in benchIn
	if err := json.Unmarshal(r.Value, &in); err != nil {
		return err
	}
	n, err := o.count.Value()
	if err != nil {
		return err
	}
	if err := o.count.Update(n + 1); err != nil {
		return err
	}
	b, err := json.Marshal(benchOut{Key: in.Key, Count: n + 1, Value: in.Value})
	if err != nil {
		return err
	}
	out.Collect(api.Record{Key: r.Key, Value: b, Timestamp: r.Timestamp})
	return nil
}

func (o *rawCount) Finish(api.Collector) error { return nil }
func (o *rawCount) Close() error               { return nil }

type typedCount struct {
	typed.Base[benchOut]
	count *api.ValueState[int64]
}

func (f *typedCount) Open(ctx api.Context) (err error) {
	f.count, err = typed.Value[int64](ctx, "count")
	return err
}

func (f *typedCount) ProcessElement(ctx *typed.Context[benchOut], in benchIn) error {
	n, err := f.count.Value()
	if err != nil {
		return err
	}
	if err := f.count.Update(n + 1); err != nil {
		return err
	}
	return ctx.Emit(benchOut{Key: in.Key, Count: n + 1, Value: in.Value})
}

func benchTypes() (raw, typ api.OperatorType) {
	raw = api.OperatorType{Name: "bench-raw", Kind: api.KindOperator, Keyed: true,
		NewOperator: func(api.Config) (api.Operator, error) { return &rawCount{}, nil }}
	typ = typed.MustType(typed.Definition[benchIn, benchOut]{Name: "bench-typed",
		New: func(api.Config) (typed.KeyedProcessFunction[benchIn, benchOut], error) { return &typedCount{}, nil }})
	return raw, typ
}

// benchInput is 1000 records over 100 keys with their key groups.
type benchRec struct {
	r  api.Record
	kg int
}

func benchInput() []benchRec {
	recs := make([]benchRec, 1000)
	for i := range recs {
		k := []byte(fmt.Sprintf("k%d", i%100))
		recs[i] = benchRec{r: api.Record{Key: k, Value: []byte(fmt.Sprintf(`{"key":"k%d","seq":%d,"value":%d,"ts":%d}`, i%100, i, i*7%1000, i)), Timestamp: int64(i)},
			kg: keygroup.Assign(k, keygroup.DefaultMaxParallelism)}
	}
	return recs
}

func runBatch(b *testing.B, h *harness, recs []benchRec, out *discard) {
	for i := range recs {
		h.eng.SetCurrentKey(recs[i].r.Key, recs[i].kg)
		if err := h.op.ProcessRecord(recs[i].r, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeyedProcess measures each variant alone (ns per record).
func BenchmarkKeyedProcess(b *testing.B) {
	raw, typ := benchTypes()
	recs := benchInput()
	for _, c := range []struct {
		name string
		typ  api.OperatorType
	}{{"raw", raw}, {"typed", typ}} {
		b.Run(c.name, func(b *testing.B) {
			h := newHarness(b, c.typ, "")
			out := &discard{}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				runBatch(b, h, recs, out)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
		})
	}
}

// BenchmarkKeyedProcessRatio runs both variants alternately in the same
// loop, batch by batch, and reports typed/raw time (the figure in
// docs/performance.md).
func BenchmarkKeyedProcessRatio(b *testing.B) {
	raw, typ := benchTypes()
	recs := benchInput()
	hr, ht := newHarness(b, raw, ""), newHarness(b, typ, "")
	out := &discard{}
	var tr, tt time.Duration
	for b.Loop() {
		t0 := time.Now()
		runBatch(b, hr, recs, out)
		t1 := time.Now()
		runBatch(b, ht, recs, out)
		tr, tt = tr+t1.Sub(t0), tt+time.Since(t1)
	}
	b.ReportMetric(float64(tt)/float64(tr), "typed/raw")
	b.ReportMetric(float64(tr.Nanoseconds())/float64(b.N*len(recs)), "raw-ns/record")
	b.ReportMetric(float64(tt.Nanoseconds())/float64(b.N*len(recs)), "typed-ns/record")
}
