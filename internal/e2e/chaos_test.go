package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// TestChaosKillCorruptStopRescale runs the keyed-count job on real
// processes through the faults a user meets, in one run: a TaskManager is
// SIGKILLed; then the newest retained checkpoint's `_metadata` is corrupted
// and another TaskManager is SIGKILLed (recovery must fall back to the
// checkpoint before it and show the broken one as CORRUPT); then the job is
// stopped with a savepoint (FINISHED only once every sink committed it) and
// restored from it at another parallelism into the same output directory.
// The committed output holds, for every key, the counts 1..N: exactly once,
// except that falling back past a checkpoint whose output the sinks had
// already committed replays that checkpoint's records (at most once more:
// no checkpoint can un-commit a file); no in-progress file is left; no file
// committed by the first run is deleted or changed.
func TestChaosKillCorruptStopRescale(t *testing.T) {
	const (
		records   = 30000
		keys      = 50
		rate      = 3000
		hbTimeout = 2 * time.Second
	)
	dir := t.TempDir()
	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--heartbeat-timeout", hbTimeout.String(), "--log-format", "text")
	jmAddr, _ := jm.addresses()
	tms := map[string]*proc{}
	next := 0
	startTM := func() {
		id := fmt.Sprintf("tm-%d", next)
		next++
		p := start(t, "taskmanager "+id, "--jobmanager", jmAddr, "--slots", "4", "--id", id,
			"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, id), "--log-format", "text")
		p.addresses()
		tms[id] = p
	}
	startTM()
	startTM()
	c := client(t, jmAddr)
	waitFor(t, 20*time.Second, "two active TaskManagers", func() bool {
		tm := taskManagers(t, c)
		return tm["tm-0"] == active && tm["tm-1"] == active
	})

	out := filepath.Join(dir, "out")
	ckDir := filepath.Join(dir, "checkpoints")
	spec := filepath.Join(dir, "job.yaml")
	writeFile(t, spec, fmt.Sprintf(`name: chaos
parallelism: 2
maxParallelism: 128
operators:
  - id: src
    type: datagen
    uid: src-v1
    config: {count: %d, keys: %d, rate: %d}
  - id: count
    type: count
    uid: count-v1
    inputs: [src]
    keyBy: key
  - id: sink
    type: file
    uid: sink-v1
    inputs: [count]
    config: {path: %q}
checkpoints: {interval: 300ms, retain: 3, storage: %q, tolerableFailures: 100}
restart: {strategy: fixed_delay, attempts: 50, delay: 300ms}
`, records, keys, rate, out, "file://"+filepath.ToSlash(ckDir)))

	runOut, err := flowctl(t, jmAddr, "run", "-d", spec)
	if err != nil {
		t.Fatalf("flowctl run: %v\n%s", err, runOut)
	}
	jobID := strings.TrimSpace(runOut)
	if m := submittedRE.FindStringSubmatch(runOut); m != nil {
		jobID = m[1]
	}
	getJob := func() *clusterv1.JobDetails {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := c.GetJob(ctx, &clusterv1.GetJobRequest{JobId: jobID})
		if err != nil {
			return nil
		}
		return resp.GetJob()
	}
	checkpoints := func() *clusterv1.ListCheckpointsResponse {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: jobID})
		if err != nil {
			return nil
		}
		return resp
	}
	latestCompleted := func(attempt int32) int64 {
		var n int64
		for _, cp := range checkpoints().GetCheckpoints() {
			if cp.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED && cp.GetAttempt() >= attempt {
				n = max(n, cp.GetId())
			}
		}
		return n
	}
	// runningWithCheckpoint waits for an attempt after `after` whose
	// subtasks all run and which completed a checkpoint, and returns it.
	runningWithCheckpoint := func(after int32) *clusterv1.JobDetails {
		var j *clusterv1.JobDetails
		waitFor(t, 40*time.Second, fmt.Sprintf("an attempt after %d running with a completed checkpoint", after), func() bool {
			j = getJob()
			if j == nil || isEnded(j) {
				return true
			}
			if j.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RUNNING || j.GetSummary().GetAttempt() <= after {
				return false
			}
			for _, tv := range j.GetTasks() {
				for _, s := range tv.GetSubtasks() {
					if s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING {
						return false
					}
				}
			}
			return latestCompleted(j.GetSummary().GetAttempt()) > 0
		})
		if isEnded(j) {
			t.Fatalf("the job ended %s: %s", j.GetSummary().GetStatus(), j.GetSummary().GetFailure())
		}
		return j
	}
	kill := func(j *clusterv1.JobDetails) {
		hosts := map[string]int{}
		for _, tv := range j.GetTasks() {
			for _, s := range tv.GetSubtasks() {
				hosts[s.GetTaskManagerId()]++
			}
		}
		victim, most := "", 0
		for id, n := range hosts {
			if n > most && tms[id] != nil {
				victim, most = id, n
			}
		}
		if victim == "" {
			t.Fatalf("no live TaskManager hosts the job: %v", hosts)
		}
		t.Logf("SIGKILL %s (%d subtasks) at attempt %d", victim, most, j.GetSummary().GetAttempt())
		tms[victim].signal(syscall.SIGKILL)
		delete(tms, victim)
		startTM()
	}

	// 1. A TaskManager dies.
	j := runningWithCheckpoint(0)
	kill(j)

	// 2. The newest checkpoint is corrupted, then another TaskManager dies:
	// recovery falls back past it.
	j = runningWithCheckpoint(j.GetSummary().GetAttempt())
	first := latestCompleted(j.GetSummary().GetAttempt())
	waitFor(t, 20*time.Second, "two more checkpoints completed in this attempt", func() bool {
		return latestCompleted(j.GetSummary().GetAttempt()) >= first+2
	})
	newest := latestCompleted(0)
	md := filepath.Join(ckDir, jobID, fmt.Sprintf("chk-%d", newest), "_metadata")
	b, err := os.ReadFile(md)
	if err != nil {
		// Retention may have moved on; take whatever is newest on disk.
		t.Fatalf("read %s: %v", md, err)
	}
	b[len(b)/2] ^= 0xff
	// Keep the checkpoint from completing more while we corrupt it: kill
	// right after the write.
	if err := os.WriteFile(md, b, 0o644); err != nil {
		t.Fatal(err)
	}
	corruptAt := j.GetSummary().GetAttempt()
	kill(j)
	j = runningWithCheckpoint(corruptAt)
	var corrupt []int64
	for _, cp := range checkpoints().GetCheckpoints() {
		if cp.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_CORRUPT {
			corrupt = append(corrupt, cp.GetId())
		}
	}
	// The corrupted checkpoint is CORRUPT unless a newer one completed
	// before the kill took effect (then it was never needed).
	ckOut, _ := flowctl(t, jmAddr, "checkpoints", jobID)
	if !slices.Contains(corrupt, newest) && latestCompleted(0) <= newest {
		t.Fatalf("checkpoint %d was corrupted and recovery went on, but it is not CORRUPT:\n%s", newest, ckOut)
	}
	t.Logf("corrupted checkpoint %d; CORRUPT: %v", newest, corrupt)

	// 3. Stop with a savepoint.
	sp, stderr, err := flowctlStdout(t, jmAddr, "stop", jobID, "--savepoint-dir", filepath.Join(dir, "savepoints"))
	if err != nil || sp == "" {
		t.Fatalf("flowctl stop: %v\n%s\n%s", err, sp, stderr)
	}
	if st := getJob().GetSummary().GetStatus(); st != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		t.Fatalf("job after stop: %s", st)
	}
	committed := map[string][]byte{}
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("after the stop, an uncommitted file is left: %s", e.Name())
			continue
		}
		b, err := os.ReadFile(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		committed[e.Name()] = b
	}
	if len(committed) == 0 {
		t.Fatal("the stopped job committed no output")
	}

	// 4. Restore from the savepoint at parallelism 3, into the same
	// directory, and run to the end.
	o, err := flowctl(t, jmAddr, "run", spec, "--from-savepoint", sp, "--set", "parallelism=3")
	if err != nil || !strings.Contains(o, "FINISHED") {
		t.Fatalf("flowctl run --from-savepoint %s: %v\n%s", sp, err, o)
	}
	for name, b := range committed {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Errorf("committed file %s of the first run is gone: %v", name, err)
			continue
		}
		if string(got) != string(b) {
			t.Errorf("committed file %s of the first run was changed", name)
		}
	}
	checkCountsAtMostTwice(t, out, records, keys)
}

// checkCountsAtMostTwice is checkCounts where each count may appear twice
// (the replay after a fallback past a committed checkpoint) but not more,
// and none may be missing.
func checkCountsAtMostTwice(t *testing.T, dir string, records, keys int64) {
	t.Helper()
	got := readCounts(t, dir)
	want := wantCounts(records, keys)
	bad, dup := 0, 0
	for k, n := range want {
		for c := int64(1); c <= n; c++ {
			switch seen := got[k][c]; {
			case seen == 0 || seen > 2:
				if bad < 10 {
					t.Errorf("key %s: count %d appears %d times", k, c, seen)
				}
				bad++
			case seen == 2:
				dup++
			}
		}
		if len(got[k]) != int(n) {
			t.Errorf("key %s: %d distinct counts, want 1..%d", k, len(got[k]), n)
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d wrong counts", bad)
	}
	t.Logf("%d of %d counts appear twice (replayed after the fallback)", dup, records)
}
