package nexmark_test

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	nexq "github.com/flowrt/flow/examples/nexmark"
	"github.com/flowrt/flow/pkg/flowtest"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

var benchEvents = flag.Int64("nexmark.events", 5_000_000, "events per query of BenchmarkNexmark")

// flinkPerCore is the per-core events/s the issue compares with: the
// higher of Nexmark's v1 results and Flink 2.0's, per query.
var flinkPerCore = map[string]float64{
	"q0": 378e3, "q1": 395e3, "q2": 175e3, "q3": 152e3, "q4": 34e3, "q5": 75e3, "q7": 23e3, "q8": 162e3, "q9": 14e3,
	"q10": 58e3, "q11": 46e3, "q12": 194e3, "q13": 131e3, "q14": 161e3, "q15": 72e3, "q16": 19e3, "q17": 161e3,
	"q18": 65e3, "q19": 44e3, "q20": 19e3, "q21": 99e3, "q22": 130e3,
}

// queries are the specs BenchmarkNexmark runs, in order (one line per query).
var queries = []string{
	"q0",
	"q1",
	"q2",
	"q3",
	"q4",
	"q5",
	"q7",
	"q8",
	"q9",
	"q10",
	"q11",
	"q12",
	"q13",
	"q14",
	"q15",
	"q16",
	"q17",
	"q18",
	"q19",
	"q20",
	"q21",
	"q22",
}

// benchQueries is -nexmark.queries (comma-separated), or every query.
var benchQueries = flag.String("nexmark.queries", "", "comma-separated queries of BenchmarkNexmark (default: all)")

// BenchmarkNexmark runs each query spec of this directory over
// -nexmark.events events at parallelism = cores on an in-process cluster
// (one TaskManager, real gRPC to the JobManager; the registry has the Go
// functions of functions.go), with checkpoints every 10 s on the Pebble
// state backend (storage: the test cluster's), and reports events/s per
// core (events / wall time / cores), events per CPU-second of the process
// (steadier on a shared machine), CPU-seconds, the peak RSS while the query
// ran (sampled every 50 ms), the longest completed checkpoint, and the
// ratio of the wall-clock figure to Flink's per-core figure. `make nexmark`
// runs it once:
//
//	go test ./examples/nexmark -run '^$' -bench Nexmark -benchtime 1x -nexmark.events 5000000
func BenchmarkNexmark(b *testing.B) {
	cores := runtime.NumCPU()
	var table strings.Builder
	fmt.Fprintf(&table, "\n| query | events | wall s | CPU s | events/s/core (wall) | events per CPU-s | Flink events/s/core | ratio (wall) | target 2x | peak RSS MiB | longest checkpoint ms |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	reg, err := nexq.Registry()
	if err != nil {
		b.Fatal(err)
	}
	run := queries
	if *benchQueries != "" {
		run = strings.Split(*benchQueries, ",")
	}
	for _, q := range run {
		b.Run(q, func(b *testing.B) {
			spec, err := os.ReadFile(q + ".yaml")
			if err != nil {
				b.Fatal(err)
			}
			c := flowtest.Start(b, flowtest.Options{Registry: reg, Slots: 4 * cores})
			var wall, cpu time.Duration
			var ckpt int64
			rss := sampleRSS()
			sets := []string{fmt.Sprintf("operators.events.config.count=%d", *benchEvents), fmt.Sprintf("parallelism=%d", cores),
				"checkpoints.interval=10s", "stateBackend.type=pebble"} // the setup; storage: the cluster's
			if q == "q13" {
				path, _ := sideTable(b)
				sets = append(sets, "operators.side.config.path="+path)
			}
			for range b.N {
				cpu0 := processCPU()
				start := time.Now()
				id := c.SubmitSpec(string(spec), sets...)
				c.AwaitStatus(id, flowtest.Finished, 15*time.Minute)
				wall += time.Since(start)
				cpu += processCPU() - cpu0
				ckpt = max(ckpt, longestCheckpoint(b, c, id))
			}
			peak := rss()
			n := float64(*benchEvents) * float64(b.N)
			perCore := n / wall.Seconds() / float64(cores)
			b.ReportMetric(perCore, "events/s/core")
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MiB")
			b.ReportMetric(float64(ckpt), "max-ckpt-ms")
			ratio := perCore / flinkPerCore[q]
			b.ReportMetric(ratio, "x-flink")
			met := "no"
			if ratio >= 2 {
				met = "yes"
			}
			perCPU := n / cpu.Seconds()
			b.ReportMetric(perCPU, "events/cpu-s")
			fmt.Fprintf(&table, "| %s | %d | %.2f | %.2f | %.0f K | %.0f K | %.0f K | %.2f | %s | %.0f | %d |\n", q, *benchEvents, wall.Seconds()/float64(b.N), cpu.Seconds()/float64(b.N),
				perCore/1e3, perCPU/1e3, flinkPerCore[q]/1e3, ratio, met, float64(peak)/(1<<20), ckpt)
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

// longestCheckpoint is the longest duration (ms) of job id's completed
// checkpoints the JobManager lists (0: none completed).
func longestCheckpoint(b *testing.B, c *flowtest.Cluster, id string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Client().ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: id})
	if err != nil {
		b.Logf("list checkpoints: %v", err)
		return 0
	}
	var longest int64
	for _, cp := range resp.GetCheckpoints() {
		if cp.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED && !cp.GetSavepoint() {
			longest = max(longest, cp.GetDurationMs())
		}
	}
	return longest
}

// sampleRSS samples the process's resident set size every 50 ms until the
// returned function is called, which returns the largest sample (bytes).
func sampleRSS() func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if r := currentRSS(); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

// currentRSS is VmRSS of /proc/self/status in bytes (0 where unavailable).
func currentRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
