package runtime

import (
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/operators/count"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// BenchmarkKeyedCountFilter compares, in one run, datagen -> keyBy(key) ->
// count -> blackhole (plain) with the same job with `filter: value % 2 ==
// 0` chained after the source (filter): the filter reads one numeric field
// of every record, so the ratio of the two records/s shows what field
// access costs in a job (issue 15's target: filter at least 50% of plain).
// One TaskManager, parallelism 1, one op is one generated record.
func BenchmarkKeyedCountFilter(b *testing.B) {
	for _, withFilter := range []bool{false, true} {
		name := "plain"
		if withFilter {
			name = "filter"
		}
		b.Run(name, func(b *testing.B) {
			c := newCluster(b, 1, exchange.Options{})
			src := vertex("gen", "datagen", kSource, 1, map[string]any{"count": b.N, "keys": 1000})
			cnt := vertex("count", "count", kOperator, 1, nil)
			cnt.KeyBy = "key"
			sink := vertex("sink", "blackhole", kSink, 1, nil)
			g := &jobgraphv1.JobGraph{Name: "keyed-count", MaxParallelism: 128,
				Vertices: []*jobgraphv1.Vertex{src, cnt, sink},
				Edges:    []*jobgraphv1.Edge{edge("gen", "count", pHash), edge("count", "sink", pForward)}}
			if withFilter {
				f := vertex("even", "filter", kOperator, 1, map[string]any{"condition": "value % 2 == 0"})
				g.Vertices = append(g.Vertices, f)
				g.Edges = []*jobgraphv1.Edge{edge("gen", "even", pForward), edge("even", "count", pHash), edge("count", "sink", pForward)}
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			start := time.Now()
			j := startJob(b, c, testRegistry(count.Type()), g, jobOptions{})
			if err := firstError(j.wait(b, 10*time.Minute)); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/record")
		})
	}
}
