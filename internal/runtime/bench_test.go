package runtime

import (
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/connectors/blackhole"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// BenchmarkPipelineTwoTaskManagers runs datagen -> keyBy(key) -> blackhole
// with the source on one exchange Manager and the sink on another, over
// gRPC on loopback, with default exchange options. One op is one record:
// allocs/op is allocations per record (job start-up included, so 0 means
// the steady state allocates nothing per record); cpu-ns/record is the
// process CPU time (all goroutines) per record, which stays meaningful when
// the machine is shared.
func BenchmarkPipelineTwoTaskManagers(b *testing.B) {
	c := newCluster(b, 2, exchange.Options{})
	sink := vertex("sink", "blackhole", kSink, 1, nil)
	sink.KeyBy = "key"
	g := &jobgraphv1.JobGraph{Name: "bench", MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{vertex("gen", "datagen", kSource, 1, map[string]any{"count": b.N, "keys": 1000}), sink},
		Edges:    []*jobgraphv1.Edge{edge("gen", "sink", pHash)}}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	j := startJob(b, c, testRegistry(), g, jobOptions{assign: func(task string, _ int) int {
		if task == "gen" {
			return 0
		}
		return 1
	}})
	if err := firstError(j.wait(b, 10*time.Minute)); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/record")
}

// BenchmarkPipelineTwoTaskManagersP2 is the same keyed pipeline at
// parallelism 2, one source and one sink subtask on each TaskManager (as
// the scheduler spreads it): the hash exchange sends about half the records
// to the other TaskManager over gRPC and half to the local sink.
func BenchmarkPipelineTwoTaskManagersP2(b *testing.B) {
	c := newCluster(b, 2, exchange.Options{})
	sink := vertex("sink", "blackhole", kSink, 2, nil)
	sink.KeyBy = "key"
	g := &jobgraphv1.JobGraph{Name: "bench-p2", MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{vertex("gen", "datagen", kSource, 2, map[string]any{"count": b.N, "keys": 1000}), sink},
		Edges:    []*jobgraphv1.Edge{edge("gen", "sink", pHash)}}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	j := startJob(b, c, testRegistry(), g, jobOptions{assign: func(_ string, subtask int) int { return subtask }})
	if err := firstError(j.wait(b, 10*time.Minute)); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/record")
}

// processCPU is the user+system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCeiling is the same generator feeding a blackhole sink directly
// in one goroutine: no serialization, no exchange, no keyBy.
func BenchmarkCeiling(b *testing.B) {
	typ := datagen.Type()
	cfg, err := typ.DecodeConfig(map[string]any{"count": b.N, "keys": 1000})
	if err != nil {
		b.Fatal(err)
	}
	src, _ := typ.NewSource(cfg)
	ctx := &opContext{info: api.TaskInfo{Parallelism: 1}, logger: slog.New(slog.DiscardHandler),
		metrics: prometheus.NewRegistry(), clock: wallClock{}}
	if err := src.Open(ctx); err != nil {
		b.Fatal(err)
	}
	bt := blackhole.Type()
	sink, _ := bt.NewSink(nil)
	if err := sink.Open(ctx); err != nil {
		b.Fatal(err)
	}
	out := &directOutput{sink: sink}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	for {
		st, err := src.Next(out)
		if err != nil {
			b.Fatal(err)
		}
		if st.End {
			break
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/record")
	if got := sink.(*blackhole.Sink).Count; got != int64(b.N) {
		b.Fatalf("sink saw %d records, want %d", got, b.N)
	}
}

type directOutput struct{ sink api.Sink }

func (d *directOutput) Collect(r api.Record) { _ = d.sink.Write(r) }
func (d *directOutput) EmitWatermark(int64)  {}
func (d *directOutput) MarkIdle()            {}
