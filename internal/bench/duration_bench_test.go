package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/minicluster"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// stateSizes are the keyed state sizes of BenchmarkCheckpointDuration and
// BenchmarkRecovery (1 KiB per key).
var stateSizes = []struct {
	name  string
	bytes int64
}{{"10MB", 10 * mib}, {"100MB", 100 * mib}, {"1GB", 1024 * mib}}

// durationBackends are the state backend variants.
var durationBackends = []struct{ name, backend, incremental string }{
	{"heap", "heap", "false"},
	{"pebble-full", "pebble", "false"},
	{"pebble-incremental", "pebble", "true"},
}

// BenchmarkCheckpointDuration measures checkpoint duration and bytes
// uploaded against keyed state size. A bigstate operator (parallelism 1)
// keeps 1 KiB of random bytes per key; the benchgen source first writes
// every key once at full speed (fill), then rewrites random keys at 0.5% of
// the keys per second (the state changes little between checkpoints).
// Checkpoints are triggered every second (retain 2, file:// storage on the
// local disk). Once a checkpoint holds the full state, the next
// FLOW_BENCH_CHECKPOINTS (default 10) completed checkpoints are the sample:
// duration p50/p99, state size, bytes uploaded per checkpoint and their
// fraction of the state size. The baseline, measured in the same run, is
// writing the same number of bytes to a file in the same directory
// (io.Copy, no fsync: the file:// storage does not sync uploads either).
//
// b.N is ignored beyond the first iteration: one job per sub-benchmark.
func BenchmarkCheckpointDuration(b *testing.B) {
	for _, be := range durationBackends {
		for _, sz := range stateSizes {
			b.Run(be.name+"/"+sz.name, func(b *testing.B) { benchDuration(b, be.backend, be.incremental, sz.bytes) })
		}
	}
}

func benchDuration(b *testing.B, backend, incremental string, stateBytes int64) {
	samples := int(envInt(b, "FLOW_BENCH_CHECKPOINTS", 10))
	keys := stateBytes / kib
	rate := max(keys/200, 50)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := b.TempDir()
	mc, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 1, Slots: 4, DataDir: filepath.Join(dir, "cluster"), Registry: registry})
	if err != nil {
		b.Fatal(err)
	}
	defer mc.Close()
	c := dial(b, mc.JobManagerAddress())
	storage := filepath.Join(dir, "checkpoints")
	b.ResetTimer()
	id := submit(b, c, fmt.Sprintf(`name: ckpt-duration
parallelism: 1
maxParallelism: 128
operators:
  - {id: src, uid: src, type: benchgen, config: {keys: %d, rate: %d}}
  - {id: state, uid: state, type: bigstate, inputs: [src], keyBy: key, config: {valueSize: 1024}}
  - {id: sink, uid: sink, type: blackhole, inputs: [state]}
stateBackend: {type: %s}
checkpoints: {interval: 1s, storage: %q, retain: 2, incremental: %s, tolerableFailures: 0}
`, keys, rate, backend, "file://"+storage, incremental))
	defer cancelJob(c, id)

	// Fill: wait for a checkpoint holding (nearly) the whole state.
	full := int64(float64(keys*kib) * 0.95)
	var first *clusterv1.CheckpointInfo
	fillStart := time.Now()
	waitFor(b, 10*time.Minute, 200*time.Millisecond, "a checkpoint holding the full state", func() bool {
		if j := getJob(c, id); isEnded(j) || j.GetSummary().GetAttempt() > 1 {
			b.Fatalf("job %s (attempt %d): %s", j.GetSummary().GetStatus(), j.GetSummary().GetAttempt(), j.GetSummary().GetFailure())
		}
		for _, cp := range completed(listCheckpoints(c, id)) {
			if cp.GetStateSize() >= full {
				first = cp
				return true
			}
		}
		return false
	})
	fillTook := time.Since(fillStart)
	var sample []*clusterv1.CheckpointInfo
	waitFor(b, time.Duration(samples)*time.Minute, 200*time.Millisecond, fmt.Sprintf("%d more checkpoints", samples), func() bool {
		r := listCheckpoints(c, id)
		if f := failedCheckpoints(r); len(f) > 0 {
			b.Fatalf("failed checkpoints: %v", f)
		}
		sample = sample[:0]
		for _, cp := range completed(r) {
			if cp.GetId() > first.GetId() {
				sample = append(sample, cp)
			}
		}
		return len(sample) >= samples
	})
	sample = sample[:samples]
	b.StopTimer()
	cancelJob(c, id)

	var durs, uploaded, sizes, syncMs, asyncMs []float64
	for _, cp := range sample {
		durs = append(durs, float64(cp.GetDurationMs()))
		uploaded = append(uploaded, float64(cp.GetUploadedSize()))
		sizes = append(sizes, float64(cp.GetStateSize()))
		var s, a int64
		for _, t := range cp.GetTasks() {
			s, a = max(s, t.GetSyncMs()), max(a, t.GetAsyncMs())
		}
		syncMs, asyncMs = append(syncMs, float64(s)), append(asyncMs, float64(a))
	}
	stateSize := int64(median(sizes))
	raw := rawWrite(b, dir, stateSize)
	p50, p99 := percentile(durs, 50), percentile(durs, 99)
	b.Logf("%s incremental=%s keys=%d: fill+first full checkpoint %.1fs; first full checkpoint %d: %d ms, uploaded %.1f MB",
		backend, incremental, keys, fillTook.Seconds(), first.GetId(), first.GetDurationMs(), mb(first.GetUploadedSize()))
	b.Logf("%d checkpoints (load %s): duration p50 %.0f ms p99 %.0f ms (max sync %.0f ms, max async p50 %.0f ms); state %.1f MB; uploaded p50 %.2f MB (%.2f%% of state), p99 %.2f MB; raw write of %.1f MB: %d ms (duration p50 / raw = %.2f)",
		len(sample), loadAvg(), p50, p99, percentile(syncMs, 100), percentile(asyncMs, 50), mb(stateSize),
		mb(int64(median(uploaded))), 100*median(uploaded)/float64(stateSize), mb(int64(percentile(uploaded, 99))),
		mb(stateSize), raw.Milliseconds(), p50/float64(raw.Milliseconds()))
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(mb(stateSize), "state-MB")
	b.ReportMetric(median(uploaded)/mib, "uploaded-MB")
	b.ReportMetric(median(uploaded)/float64(stateSize), "uploaded/state")
	b.ReportMetric(float64(raw.Milliseconds()), "raw-write-ms")
	b.ReportMetric(p50/float64(max(raw.Milliseconds(), 1)), "p50/raw-write")
}

// rawWrite times writing n random bytes to a new file under dir (no fsync)
// and removes it.
func rawWrite(b *testing.B, dir string, n int64) time.Duration {
	buf := make([]byte, mib)
	if _, err := rand.Read(buf); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "raw-write")
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for left := n; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	if err := os.Remove(path); err != nil {
		b.Fatal(err)
	}
	return took
}
