package runtime

import (
	"bytes"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/operators/join"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

const (
	benchJoinKeys  = 1000
	benchJoinLower = -5
	benchJoinUpper = 10
)

// BenchmarkIntervalJoin runs two datagen sources (b.N records each, event
// time = record number) into an interval join on key (heap state, lower
// -5ms, upper 10ms) chained to a blackhole, all on one exchange Manager.
// One op is one record of either input (2*b.N in all).
func BenchmarkIntervalJoin(b *testing.B) {
	c := newCluster(b, 1, exchange.Options{})
	wm := &jobgraphv1.WatermarkStrategy{IntervalMs: 10} // datagen sets the timestamps
	a := vertex("a", "datagen", kSource, 1, map[string]any{"count": b.N, "keys": benchJoinKeys, "seed": 1})
	bb := vertex("b", "datagen", kSource, 1, map[string]any{"count": b.N, "keys": benchJoinKeys, "seed": 2})
	a.Watermarks, bb.Watermarks = wm, wm
	j := vertex("j", join.IntervalName, kOperator, 1, map[string]any{"lower": "-5ms", "upper": "10ms"})
	j.KeyBy = "key"
	g := &jobgraphv1.JobGraph{Name: "bench-join", MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{a, bb, j, vertex("sink", "blackhole", kSink, 1, nil)},
		Edges: []*jobgraphv1.Edge{edge("a", "j", pHash), {Source: "b", Target: "j", Partitioning: pHash, Input: 1},
			edge("j", "sink", pForward)}}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	job := startJob(b, c, testRegistry(join.IntervalType()), g, jobOptions{})
	if err := firstError(job.wait(b, 10*time.Minute)); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(2*b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(2*b.N), "cpu-ns/record")
}

// BenchmarkIntervalJoinHandWritten is the baseline: the same records and
// join in one goroutine with two Go maps per key (timestamp -> rows),
// probing the interval by timestamp, dropping rows behind the watermark
// every 1024 records, and building the same output bytes. No exchange, no
// serialization, no state backend: a ceiling.
func BenchmarkIntervalJoinHandWritten(b *testing.B) {
	type sides struct{ l, r map[int64][][]byte }
	state := map[string]*sides{}
	var recBuf, out []byte
	emitted := 0
	keyOf := func(rec []byte) []byte { // {"key":"k123",...}
		s := bytes.IndexByte(rec[8:], '"')
		return rec[8 : 8+s]
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	for n := int64(0); n < int64(b.N); n++ {
		for side := int64(1); side <= 2; side++ {
			recBuf = datagen.AppendRecord(recBuf[:0], side, benchJoinKeys, n, n)
			row := append([]byte(nil), recBuf...)
			st := state[string(keyOf(row))]
			if st == nil {
				st = &sides{l: map[int64][][]byte{}, r: map[int64][][]byte{}}
				state[string(keyOf(row))] = st
			}
			mine, other, lo, hi := st.l, st.r, n-benchJoinUpper, n-benchJoinLower
			if side == 2 {
				mine, other, lo, hi = st.r, st.l, n+benchJoinLower, n+benchJoinUpper
			}
			for t := lo; t <= hi; t++ {
				for _, o := range other[t] {
					out = append(out[:0], `{"left":`...)
					if side == 1 {
						out = append(append(append(out, row...), `,"right":`...), o...)
					} else {
						out = append(append(append(out, o...), `,"right":`...), row...)
					}
					out = append(out, '}')
					emitted++
				}
			}
			mine[n] = append(mine[n], row)
		}
		if n%1024 == 0 {
			wm := n - 1
			for _, st := range state {
				for t := range st.l {
					if t-benchJoinLower < wm {
						delete(st.l, t)
					}
				}
				for t := range st.r {
					if t+benchJoinUpper < wm {
						delete(st.r, t)
					}
				}
			}
		}
	}
	b.ReportMetric(float64(2*b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(2*b.N), "cpu-ns/record")
	if b.N > 1000 && emitted == 0 {
		b.Fatal("the baseline joined nothing")
	}
}
