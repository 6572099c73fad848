package runtime

import (
	"bytes"
	"slices"
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

// intervalJoinGraph is two datagen sources (n records each, event time =
// record number) into an interval join on key (heap state, lower -5ms,
// upper 10ms, default bucket) into sink.
func intervalJoinGraph(n int, sink string) *jobgraphv1.JobGraph {
	wm := &jobgraphv1.WatermarkStrategy{IntervalMs: 10} // datagen sets the timestamps
	a := vertex("a", "datagen", kSource, 1, map[string]any{"count": n, "keys": benchJoinKeys, "seed": 1})
	bb := vertex("b", "datagen", kSource, 1, map[string]any{"count": n, "keys": benchJoinKeys, "seed": 2})
	a.Watermarks, bb.Watermarks = wm, wm
	j := vertex("j", join.IntervalName, kOperator, 1, map[string]any{"lower": "-5ms", "upper": "10ms"})
	j.KeyBy = "key"
	return &jobgraphv1.JobGraph{Name: "bench-join", MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{a, bb, j, vertex("sink", sink, kSink, 1, nil)},
		Edges: []*jobgraphv1.Edge{edge("a", "j", pHash), {Source: "b", Target: "j", Partitioning: pHash, Input: 1},
			edge("j", "sink", pForward)}}
}

// runIntervalJoin runs intervalJoinGraph(n, blackhole) to the end and
// returns its wall time and process CPU time.
func runIntervalJoin(b *testing.B, n int) (wall, cpu time.Duration) {
	c := newCluster(b, 1, exchange.Options{})
	cpu0 := processCPU()
	start := time.Now()
	job := startJob(b, c, testRegistry(join.IntervalType()), intervalJoinGraph(n, "blackhole"), jobOptions{})
	if err := firstError(job.wait(b, 10*time.Minute)); err != nil {
		b.Fatal(err)
	}
	return time.Since(start), processCPU() - cpu0
}

// handWrittenJoin is the baseline: the records of intervalJoinGraph(n)
// joined in one goroutine with two Go maps per key (timestamp -> rows),
// probing the interval timestamp by timestamp, dropping rows behind the
// watermark every 1024 records, and building the same output bytes, which
// it passes to emit (valid during the call). It returns the number of
// rows emitted.
func handWrittenJoin(n int64, emit func(out []byte)) int {
	type sides struct{ l, r map[int64][][]byte }
	state := map[string]*sides{}
	var recBuf, out []byte
	emitted := 0
	keyOf := func(rec []byte) []byte { // {"key":"k123",...}
		s := bytes.IndexByte(rec[8:], '"')
		return rec[8 : 8+s]
	}
	for n0 := int64(0); n0 < n; n0++ {
		for side := int64(1); side <= 2; side++ {
			recBuf = datagen.AppendRecord(recBuf[:0], side, benchJoinKeys, n0, n0)
			row := append([]byte(nil), recBuf...)
			st := state[string(keyOf(row))]
			if st == nil {
				st = &sides{l: map[int64][][]byte{}, r: map[int64][][]byte{}}
				state[string(keyOf(row))] = st
			}
			mine, other, lo, hi := st.l, st.r, n0-benchJoinUpper, n0-benchJoinLower
			if side == 2 {
				mine, other, lo, hi = st.r, st.l, n0+benchJoinLower, n0+benchJoinUpper
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
					if emit != nil {
						emit(out)
					}
				}
			}
			mine[n0] = append(mine[n0], row)
		}
		if n0%1024 == 0 {
			wm := n0 - 1
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
	return emitted
}

// BenchmarkIntervalJoin runs two datagen sources (b.N records each, event
// time = record number) into an interval join on key (heap state, lower
// -5ms, upper 10ms) chained to a blackhole, all on one exchange Manager.
// One op is one record of either input (2*b.N in all).
func BenchmarkIntervalJoin(b *testing.B) {
	b.ReportAllocs()
	b.ResetTimer()
	wall, cpu := runIntervalJoin(b, b.N)
	b.ReportMetric(float64(2*b.N)/wall.Seconds(), "records/s")
	b.ReportMetric(float64(cpu)/float64(2*b.N), "cpu-ns/record")
}

// BenchmarkIntervalJoinHandWritten is the baseline (handWrittenJoin): no
// exchange, no serialization, no state backend: a ceiling.
func BenchmarkIntervalJoinHandWritten(b *testing.B) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	emitted := handWrittenJoin(int64(b.N), nil)
	b.ReportMetric(float64(2*b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(2*b.N), "cpu-ns/record")
	if b.N > 1000 && emitted == 0 {
		b.Fatal("the baseline joined nothing")
	}
}

// BenchmarkIntervalJoinRatio runs the interval join and the hand-written
// join on b.N records per input alternately, 5 rounds, and reports the
// throughput ratio join/hand-written (wall time of the baseline over the
// join's) of each round's pair: the median, min and max. Pairs run back
// to back share the machine's load.
func BenchmarkIntervalJoinRatio(b *testing.B) {
	const rounds = 5
	ratios := make([]float64, 0, rounds)
	for range rounds {
		wall, _ := runIntervalJoin(b, b.N)
		start := time.Now()
		handWrittenJoin(int64(b.N), nil)
		ratios = append(ratios, time.Since(start).Seconds()/wall.Seconds())
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[rounds/2], "ratio-median")
	b.ReportMetric(ratios[0], "ratio-min")
	b.ReportMetric(ratios[rounds-1], "ratio-max")
}

// TestIntervalJoinBenchmarkFair: the benchmarked job and the hand-written
// baseline emit the same output bytes (as multisets) for the same inputs.
func TestIntervalJoinBenchmarkFair(t *testing.T) {
	const n = 30000
	var want []string
	handWrittenJoin(n, func(out []byte) { want = append(want, string(out)) })
	if len(want) < 100 {
		t.Fatalf("the baseline joined %d rows: the test compares too little", len(want))
	}
	st := newStore()
	c := newCluster(t, 1, exchange.Options{})
	reg := testRegistry(join.IntervalType(), collectType("collect", st, 0))
	job := startJob(t, c, reg, intervalJoinGraph(n, "collect"), jobOptions{})
	if err := firstError(job.wait(t, 2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, recs := range st.all() {
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		first := func(s []string) string {
			if i < len(s) {
				return s[i]
			}
			return "(end)"
		}
		t.Fatalf("the join emitted %d rows, the hand-written baseline %d; first difference at %d: %s vs %s", len(got), len(want), i, first(got), first(want))
	}
}
