package bench

import (
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flowrt/flow/pkg/checkpoint/storage"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// recoverySizes are the keyed state sizes of BenchmarkRecovery; 16MB is the
// smoke size.
var recoverySizes = []struct {
	name  string
	bytes int64
}{{"16MB", 16 * mib}, {"100MB", 100 * mib}, {"1GB", 1024 * mib}}

// recoveryBackends: heap with full checkpoints, Pebble with incremental
// ones (the configuration recommended for large Pebble state).
var recoveryBackends = []struct{ name, backend, incremental string }{
	{"heap", "heap", "false"},
	{"pebble-incremental", "pebble", "true"},
}

const (
	heartbeatTimeout = 2 * time.Second
	restartDelay     = time.Second
	stateTask        = "state"
)

// BenchmarkRecovery runs a real JobManager (heartbeat timeout 2 s) and two
// real TaskManagers (this test binary re-executed as the stock daemon
// commands, with the bigstate/benchgen registry) and the job benchgen ->
// bigstate (1 KiB per key, keyed) -> blackhole at parallelism 1, with
// checkpoints every second and a fixed-delay restart strategy (1 s). Once a
// checkpoint holds the full state, each of b.N x FLOW_BENCH_KILLS (default
// 2) rounds SIGKILLs the
// TaskManager running the bigstate subtask, starts a replacement
// TaskManager, and measures the time from the kill to processing resumed:
// the new attempt's subtasks all RUNNING and bigstate's
// flow_task_records_out_total (TaskManagers' /metrics, polled every 10 ms)
// growing again, which it does only after its state is restored. The split:
//
//	detection   kill -> job FAILING (JobManager history)
//	restart     FAILING -> RESTARTING (other subtasks canceled) + the 1 s delay
//	deployment  end of the delay -> every subtask of the new attempt RUNNING
//	restore     -> records out growing (state download + restore + first records)
//
// Baseline in the same run: `cp --parents` of the latest completed
// checkpoint's files (its _metadata and every file it references, shared
// SST files included) on the same disk; restore throughput (restored state size / restore phase) is
// reported against the copy throughput.
func BenchmarkRecovery(b *testing.B) {
	for _, be := range recoveryBackends {
		for _, sz := range recoverySizes {
			b.Run(be.name+"/"+sz.name, func(b *testing.B) { benchRecovery(b, be.backend, be.incremental, sz.bytes) })
		}
	}
}

type recoveryRound struct {
	stateBytes                                 int64
	detection, restart, deploy, restore, total time.Duration
	copyBytes                                  int64
	copyTook                                   time.Duration
}

func benchRecovery(b *testing.B, backend, incremental string, stateBytes int64) {
	dir := b.TempDir()
	jm := startDaemon(b, "jobmanager", "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--heartbeat-timeout", heartbeatTimeout.String())
	jmAddr, _ := jm.addresses(b)
	tms := map[string]*tmInfo{}
	next := 0
	startTM := func() {
		id := fmt.Sprintf("tm-%d", next)
		next++
		p := startDaemon(b, "taskmanager", id, "--jobmanager", jmAddr, "--slots", "4", "--id", id,
			"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, id))
		_, h := p.addresses(b)
		tms[id] = &tmInfo{p: p, httpAddr: h}
	}
	startTM()
	startTM()
	c := dial(b, jmAddr)

	keys := stateBytes / kib
	rate := max(keys/200, 50)
	storage := filepath.Join(dir, "checkpoints")
	id := submit(b, c, fmt.Sprintf(`name: recovery
parallelism: 1
maxParallelism: 128
operators:
  - {id: src, uid: src, type: benchgen, config: {keys: %d, rate: %d}}
  - {id: %s, uid: state, type: bigstate, inputs: [src], keyBy: key, config: {valueSize: 1024}}
  - {id: sink, uid: sink, type: blackhole, inputs: [%[3]s]}
stateBackend: {type: %s}
checkpoints: {interval: 1s, storage: %q, retain: 3, incremental: %s, tolerableFailures: 100}
restart: {strategy: fixed_delay, attempts: 1000, delay: %s}
`, keys, rate, stateTask, backend, "file://"+storage, incremental, restartDelay))
	defer cancelJob(c, id)

	full := int64(float64(keys*kib) * 0.95)
	fullCheckpoint := func(attempt int32) *clusterv1.CheckpointInfo {
		var last *clusterv1.CheckpointInfo
		for _, cp := range completed(listCheckpoints(c, id)) {
			if cp.GetStateSize() >= full && cp.GetAttempt() >= attempt {
				last = cp
			}
		}
		return last
	}

	var rounds []recoveryRound
	kills := b.N * int(envInt(b, "FLOW_BENCH_KILLS", 2))
	b.ResetTimer()
	for i := 0; i < kills; i++ {
		// The current attempt runs and has checkpointed the full state.
		var j *clusterv1.JobDetails
		var restored *clusterv1.CheckpointInfo
		waitFor(b, 15*time.Minute, 100*time.Millisecond, "a running attempt with a full-state checkpoint", func() bool {
			j = getJob(c, id)
			if isEnded(j) {
				b.Fatalf("job ended %s: %s", j.GetSummary().GetStatus(), j.GetSummary().GetFailure())
			}
			if !allRunning(j) {
				return false
			}
			restored = fullCheckpoint(j.GetSummary().GetAttempt())
			return restored != nil
		})
		attempt := j.GetSummary().GetAttempt()
		victim, placement := "", ""
		for _, tv := range j.GetTasks() {
			for _, s := range tv.GetSubtasks() {
				placement += fmt.Sprintf(" %s@%s", tv.GetId(), s.GetTaskManagerId())
			}
			if tv.GetId() == stateTask {
				victim = tv.GetSubtasks()[0].GetTaskManagerId()
			}
		}
		if tms[victim] == nil || tms[victim].terminated {
			b.Fatalf("the %s subtask runs on %q, not a live TaskManager of this benchmark", stateTask, victim)
		}
		// The checkpoint restored is the latest completed one at the kill.
		if cs := completed(listCheckpoints(c, id)); len(cs) > 0 {
			restored = cs[len(cs)-1]
		}
		failingBefore := countStatus(j, clusterv1.JobStatus_JOB_STATUS_FAILING)
		killed := time.Now()
		tms[victim].p.kill(b)
		tms[victim].terminated = true
		startTM()

		var allUp time.Time
		var base float64
		var resumed time.Time
		waitFor(b, 15*time.Minute, 10*time.Millisecond, "processing to resume after the kill", func() bool {
			if allUp.IsZero() {
				j = getJob(c, id)
				if isEnded(j) {
					b.Fatalf("job ended %s: %s", j.GetSummary().GetStatus(), j.GetSummary().GetFailure())
				}
				if j.GetSummary().GetAttempt() > attempt && allRunning(j) {
					allUp = time.Now()
					base = sumRecordsOut(tms)
				}
				return false
			}
			if sumRecordsOut(tms) > base {
				resumed = time.Now()
				return true
			}
			return false
		})
		failing := historyTime(j, clusterv1.JobStatus_JOB_STATUS_FAILING, failingBefore)
		restarting := historyTime(j, clusterv1.JobStatus_JOB_STATUS_RESTARTING, failingBefore)
		if failing.IsZero() || restarting.IsZero() {
			b.Fatalf("no FAILING/RESTARTING after the kill in the history: %v", j.GetHistory())
		}
		// History times have millisecond resolution: clamp at 0.
		r := recoveryRound{
			stateBytes: restored.GetStateSize(),
			detection:  max(failing.Sub(killed), 0),
			restart:    max(restarting.Sub(failing), 0) + restartDelay,
			total:      resumed.Sub(killed),
			restore:    resumed.Sub(allUp),
		}
		r.deploy = max(allUp.Sub(restarting.Add(restartDelay)), 0)
		b.StopTimer()
		r.copyBytes, r.copyTook = copyLatestCheckpoint(b, c, id, dir, i)
		b.StartTimer()
		rounds = append(rounds, r)
		b.Logf("round %d (load %s): tasks%s; killed %s (attempt %d, checkpoint %d of %.1f MB): resumed after %s = detection %s + restart %s + deployment %s + restore %s; cp of %.1f MB: %s",
			i+1, loadAvg(), placement, victim, attempt, restored.GetId(), mb(r.stateBytes), ms(r.total), ms(r.detection), ms(r.restart), ms(r.deploy), ms(r.restore),
			mb(r.copyBytes), ms(r.copyTook))
	}
	b.StopTimer()

	var total, det, rst, dep, res, perGB, restoreMBs, copyMBs, ratio []float64
	for _, r := range rounds {
		total = append(total, r.total.Seconds())
		det, rst, dep, res = append(det, r.detection.Seconds()), append(rst, r.restart.Seconds()), append(dep, r.deploy.Seconds()), append(res, r.restore.Seconds())
		perGB = append(perGB, r.total.Seconds()/(float64(r.stateBytes)/(1<<30)))
		rm := mb(r.stateBytes) / r.restore.Seconds()
		cm := mb(r.copyBytes) / r.copyTook.Seconds()
		restoreMBs, copyMBs, ratio = append(restoreMBs, rm), append(copyMBs, cm), append(ratio, rm/cm)
	}
	b.ReportMetric(median(total), "recovery-s")
	b.ReportMetric(median(det), "detect-s")
	b.ReportMetric(median(rst), "restart-s")
	b.ReportMetric(median(dep), "deploy-s")
	b.ReportMetric(median(res), "restore-s")
	b.ReportMetric(median(perGB), "recovery-s/GB")
	b.ReportMetric(median(restoreMBs), "restore-MB/s")
	b.ReportMetric(median(copyMBs), "cp-MB/s")
	b.ReportMetric(median(ratio), "restore/cp")
}

func countStatus(j *clusterv1.JobDetails, st clusterv1.JobStatus) int {
	n := 0
	for _, h := range j.GetHistory() {
		if h.GetStatus() == st {
			n++
		}
	}
	return n
}

// sumRecordsOut sums the bigstate task's records out over the TaskManagers
// not killed.
func sumRecordsOut(tms map[string]*tmInfo) float64 {
	var n float64
	for _, tm := range tms {
		if !tm.terminated {
			v, _ := recordsOut(tm.httpAddr, stateTask)
			n += v
		}
	}
	return n
}

// tmInfo is a TaskManager process of BenchmarkRecovery.
type tmInfo struct {
	p          *proc
	httpAddr   string
	terminated bool
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// copyLatestCheckpoint copies the files of the latest completed checkpoint
// (its _metadata and every file its state handles name, including shared
// SST files of incremental checkpoints) with `cp --parents` into a fresh
// directory on the same disk, and returns the bytes copied and the time
// taken. A copy that loses a race with retention (a file deleted under it)
// is retried with the then latest checkpoint.
func copyLatestCheckpoint(b *testing.B, c clusterv1.JobManagerServiceClient, job, dir string, round int) (int64, time.Duration) {
	for try := 0; try < 5; try++ {
		path := listCheckpoints(c, job).GetLatestCompletedPath()
		u, err := url.Parse(path)
		if err != nil || u.Scheme != "file" {
			b.Fatalf("latest completed checkpoint %q is not a file:// URL", path)
		}
		chk := strings.TrimSuffix(u.Path, "/_metadata")
		base := filepath.Dir(filepath.Dir(chk)) // the storage root: <root>/<job>/chk-<n>
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		md, err := storage.ReadMetadata(ctx, path)
		cancel()
		if err != nil {
			b.Logf("read metadata of %s: %v (retrying)", path, err)
			continue
		}
		rel, _ := filepath.Rel(base, filepath.Join(chk, "_metadata"))
		files := append([]string{rel}, fileHandlePaths(md.ProtoReflect())...)
		dst := filepath.Join(dir, fmt.Sprintf("cp-%d-%d", round, try))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command("cp", append(append([]string{"--parents"}, files...), dst)...)
		cmd.Dir = base
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		n := dirBytes(dst)
		_ = os.RemoveAll(dst)
		if err == nil {
			return n, took
		}
		b.Logf("cp --parents of %d files of %s: %v: %s (retrying)", len(files), path, err, tail(string(out), 2))
	}
	b.Fatal("could not copy a checkpoint in 5 tries")
	return 0, 0
}

// fileHandlePaths collects the path of every FileHandle in m.
func fileHandlePaths(m protoreflect.Message) []string {
	var out []string
	if m.Descriptor().Name() == "FileHandle" {
		if f := m.Descriptor().Fields().ByName("path"); f != nil {
			if p := m.Get(f).String(); p != "" {
				out = append(out, p)
			}
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				out = append(out, fileHandlePaths(v.List().Get(i).Message())...)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				out = append(out, fileHandlePaths(mv.Message())...)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			out = append(out, fileHandlePaths(v.Message())...)
		}
		return true
	})
	return out
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func dirBytes(root string) int64 {
	var n int64
	_ = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
