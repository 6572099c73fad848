package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/minicluster"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// BenchmarkCheckpointOverhead runs the keyed-count job (datagen at full
// speed -> count keyed by key -> blackhole, parallelism 1, 100,000 keys)
// on a mini cluster, once with checkpoints every second and once without,
// in each of b.N rounds (the order alternates between rounds), and reports
// the records/s of both (records / time from RUNNING to FINISHED in the
// job's history) and the median ratio with/without (target >= 0.95).
// Records per job: 4,000,000 on heap and 500,000 on Pebble (about 2 s
// each), times FLOW_BENCH_SCALE (default 1; use 8 so that a job spans
// several checkpoints).
func BenchmarkCheckpointOverhead(b *testing.B) {
	for _, backend := range []string{"heap", "pebble"} {
		b.Run(backend, func(b *testing.B) { benchOverhead(b, backend) })
	}
}

func benchOverhead(b *testing.B, backend string) {
	records := int64(4_000_000)
	if backend == "pebble" {
		records = 500_000
	}
	records *= envInt(b, "FLOW_BENCH_SCALE", 1)
	const keys = 100_000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := b.TempDir()
	mc, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 2, Slots: 4, DataDir: filepath.Join(dir, "cluster"), Registry: registry})
	if err != nil {
		b.Fatal(err)
	}
	defer mc.Close()
	c := dial(b, mc.JobManagerAddress())

	run := func(round int, checkpoints bool) (rate float64, cps int) {
		// Start every job from the same heap: the previous job's state is
		// garbage, and collecting it during the next job made the second
		// job of each pair ~15% slower, whichever mode it ran in.
		runtime.GC()
		// A quiet pause before the timed job (nothing to await: the
		// previous job ended); it keeps the pairs' conditions alike.
		time.Sleep(200 * time.Millisecond)
		ck := ""
		if checkpoints {
			ck = fmt.Sprintf("checkpoints: {interval: 1s, storage: %q, retain: 1}\n", "file://"+filepath.Join(dir, fmt.Sprintf("ck-%d", round)))
		}
		id := submit(b, c, fmt.Sprintf(`name: overhead
parallelism: 1
maxParallelism: 128
operators:
  - {id: src, uid: src, type: datagen, config: {count: %d, keys: %d}}
  - {id: count, uid: count, type: count, inputs: [src], keyBy: key}
  - {id: sink, uid: sink, type: blackhole, inputs: [count]}
stateBackend: {type: %s}
%s`, records, keys, backend, ck))
		var j *clusterv1.JobDetails
		waitFor(b, 10*time.Minute, 20*time.Millisecond, "the job to end", func() bool {
			j = getJob(c, id)
			return isEnded(j)
		})
		if st := j.GetSummary().GetStatus(); st != clusterv1.JobStatus_JOB_STATUS_FINISHED {
			b.Fatalf("job ended %s: %s", st, j.GetSummary().GetFailure())
		}
		if j.GetSummary().GetAttempt() > 1 {
			b.Fatalf("job restarted (attempt %d): %v", j.GetSummary().GetAttempt(), j.GetHistory())
		}
		took := historyTime(j, clusterv1.JobStatus_JOB_STATUS_FINISHED, 0).Sub(historyTime(j, clusterv1.JobStatus_JOB_STATUS_RUNNING, 0))
		if took <= 0 {
			b.Fatalf("no RUNNING -> FINISHED span in the history: %v", j.GetHistory())
		}
		if checkpoints {
			r := listCheckpoints(c, id)
			cps = len(completed(r))
			if f := failedCheckpoints(r); len(f) > 0 {
				b.Fatalf("failed checkpoints: %v", f)
			}
			if took > 3*time.Second && cps == 0 {
				b.Fatalf("a %s job with 1s checkpoints completed none", took)
			}
		}
		return float64(records) / took.Seconds(), cps
	}

	var with, without, ratios []float64
	cpsTotal := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var w, wo float64
		var cps int
		if i%2 == 0 {
			wo, _ = run(i, false)
			w, cps = run(i, true)
		} else {
			w, cps = run(i, true)
			wo, _ = run(i, false)
		}
		with, without, ratios = append(with, w), append(without, wo), append(ratios, w/wo)
		cpsTotal += cps
		b.Logf("%s round %d (load %s): without %.2f M rec/s, with 1s checkpoints %.2f M rec/s (%d checkpoints), ratio %.3f",
			backend, i+1, loadAvg(), wo/1e6, w/1e6, cps, w/wo)
	}
	b.StopTimer()
	b.ReportMetric(median(without), "rec/s-no-ckpt")
	b.ReportMetric(median(with), "rec/s-ckpt-1s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(geomean(ratios), "ratio-geomean")
	b.ReportMetric(float64(cpsTotal)/float64(b.N), "ckpts/job")
}
