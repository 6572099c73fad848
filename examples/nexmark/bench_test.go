package nexmark_test

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/flowtest"
)

var benchEvents = flag.Int64("nexmark.events", 5_000_000, "events per query of BenchmarkNexmark")

// flinkPerCore is the per-core events/s the issue compares with: the
// higher of Nexmark's v1 results and Flink 2.0's, per query.
var flinkPerCore = map[string]float64{"q0": 378e3, "q1": 395e3, "q2": 175e3}

// queries are the specs BenchmarkNexmark runs, in order.
var queries = []string{"q0", "q1", "q2"}

// BenchmarkNexmark runs each query spec of this directory over
// -nexmark.events events at parallelism = cores on an in-process cluster
// (one TaskManager, real gRPC to the JobManager), with checkpoints every 10
// s on the Pebble state backend (storage: the test cluster's), and reports events/s per
// core (events / wall time / cores), events per CPU-second of the process
// (steadier on a shared machine), CPU-seconds and peak RSS, and the ratio
// of the wall-clock figure to Flink's per-core figure. `make nexmark` runs it once:
//
//	go test ./examples/nexmark -run '^$' -bench Nexmark -benchtime 1x -nexmark.events 5000000
func BenchmarkNexmark(b *testing.B) {
	cores := runtime.NumCPU()
	var table strings.Builder
	fmt.Fprintf(&table, "\n| query | events | wall s | CPU s | events/s/core (wall) | events per CPU-s | Flink events/s/core | ratio (wall) | target 2x |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, q := range queries {
		b.Run(q, func(b *testing.B) {
			spec, err := os.ReadFile(q + ".yaml")
			if err != nil {
				b.Fatal(err)
			}
			c := flowtest.Start(b, flowtest.Options{Registry: api.Default, Slots: 4 * cores})
			var wall, cpu time.Duration
			for range b.N {
				cpu0 := processCPU()
				start := time.Now()
				id := c.SubmitSpec(string(spec), fmt.Sprintf("operators.events.config.count=%d", *benchEvents), fmt.Sprintf("parallelism=%d", cores),
					"checkpoints.interval=10s", "stateBackend.type=pebble") // the setup; storage: the cluster's
				c.AwaitStatus(id, flowtest.Finished, 15*time.Minute)
				wall += time.Since(start)
				cpu += processCPU() - cpu0
			}
			n := float64(*benchEvents) * float64(b.N)
			perCore := n / wall.Seconds() / float64(cores)
			b.ReportMetric(perCore, "events/s/core")
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(maxRSS())/(1<<20), "peak-rss-MiB")
			ratio := perCore / flinkPerCore[q]
			b.ReportMetric(ratio, "x-flink")
			met := "no"
			if ratio >= 2 {
				met = "yes"
			}
			perCPU := n / cpu.Seconds()
			b.ReportMetric(perCPU, "events/cpu-s")
			fmt.Fprintf(&table, "| %s | %d | %.2f | %.2f | %.0f K | %.0f K | %.0f K | %.2f | %s |\n", q, *benchEvents, wall.Seconds()/float64(b.N), cpu.Seconds()/float64(b.N), perCore/1e3, perCPU/1e3, flinkPerCore[q]/1e3, ratio, met)
		})
	}
	fmt.Println(table.String()) // the table for docs/performance.md
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// maxRSS is the process's peak resident set size in bytes (Linux: KiB).
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024
}
