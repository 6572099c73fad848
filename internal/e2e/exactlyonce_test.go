package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/connectors/datagen"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// TestExactlyOnceUnderTaskManagerKills runs the keyed-count job (datagen ->
// count keyed by key -> file sink) with checkpoints every 500ms and a
// fixed-delay restart strategy on a real JobManager and two real
// TaskManagers, SIGKILLs the TaskManager running the job's subtasks twice
// while it runs (starting a replacement each time), and checks that the job
// finishes with the output of an uninterrupted run: for every key, the
// counts 1..N each exactly once (at_least_once: each at least once). Each
// variant asserts the job went through restarts (attempt > 1), so the
// kills really hit it.
func TestExactlyOnceUnderTaskManagerKills(t *testing.T) {
	variants := []struct {
		name, backend, checkpoints string
		atLeastOnce                bool
	}{
		{"heap-aligned", "heap", "mode: exactly_once", false},
		{"pebble-aligned-incremental", "pebble", "mode: exactly_once, incremental: true", false},
		{"heap-unaligned", "heap", "mode: exactly_once, unaligned: true", false},
		{"pebble-unaligned-incremental", "pebble", "mode: exactly_once, unaligned: true, incremental: true", false},
		{"heap-at-least-once", "heap", "mode: at_least_once", true},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			runKilledKeyedCount(t, v.backend, v.checkpoints, v.atLeastOnce)
		})
	}
}

var submittedRE = regexp.MustCompile(`submitted job "[^"]*" as (\S+)`)

func runKilledKeyedCount(t *testing.T, backend, checkpoints string, atLeastOnce bool) {
	const (
		records   = 40000
		keys      = 100
		rate      = 3500 // records/s: the job runs ~11s without failures
		kills     = 2
		hbTimeout = 2 * time.Second
	)
	dir := t.TempDir()
	kc := startKillableCluster(t, dir, hbTimeout)
	jmAddr, c, tms, startTM := kc.jmAddr, kc.client, kc.tms, kc.startTM

	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "job.yaml")
	writeFile(t, spec, fmt.Sprintf(`name: keyed-count-kills
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
stateBackend:
  type: %s
checkpoints: {interval: 500ms, %s, storage: %q, tolerableFailures: 100}
restart:
  strategy: fixed_delay
  attempts: 50
  delay: 500ms
`, records, keys, rate, out, backend, checkpoints, "file://"+filepath.ToSlash(filepath.Join(dir, "checkpoints"))))
	runOut, err := flowctl(t, jmAddr, "run", "-d", spec)
	if err != nil {
		t.Fatalf("flowctl run: %v\n%s", err, runOut)
	}
	jobID := strings.TrimSpace(runOut)
	if m := submittedRE.FindStringSubmatch(runOut); m != nil {
		jobID = m[1]
	}
	if jobID == "" || strings.ContainsAny(jobID, " \n") {
		t.Fatalf("no job id in flowctl run -d output:\n%s", runOut)
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
	completedCheckpoints := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: jobID})
		if err != nil {
			return 0
		}
		// The latest completed id (completed checkpoints out of retention
		// are DISCARDED).
		var n int64
		for _, cp := range resp.GetCheckpoints() {
			switch cp.GetStatus() {
			case clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED:
				n = max(n, cp.GetId())
			}
		}
		return n
	}
	running := func() (*clusterv1.JobDetails, bool) {
		j := getJob()
		if j == nil || j.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RUNNING {
			return j, false
		}
		for _, tv := range j.GetTasks() {
			for _, s := range tv.GetSubtasks() {
				if s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING {
					return j, false
				}
			}
		}
		return j, true
	}

	next := 2
	for k := 0; k < kills; k++ {
		// Let the attempt run and complete a checkpoint, then kill the
		// TaskManager hosting most of its subtasks.
		var j *clusterv1.JobDetails
		waitFor(t, 30*time.Second, fmt.Sprintf("attempt %d running", k), func() bool {
			var ok bool
			j, ok = running()
			return ok
		})
		base := completedCheckpoints()
		waitFor(t, 20*time.Second, "a checkpoint completed in this attempt", func() bool { return completedCheckpoints() > base })
		// Records generated after that checkpoint: the restore replays them.
		live := make([]*proc, 0, len(tms))
		for _, p := range tms {
			live = append(live, p)
		}
		from := recordsIn(live, jobID, "src")
		waitFor(t, 20*time.Second, "records generated after the checkpoint", func() bool {
			return recordsIn(live, jobID, "src") >= from+rate/2
		})
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
			t.Fatalf("no live TaskManager hosts the job's subtasks: %v", hosts)
		}
		attempt := j.GetSummary().GetAttempt()
		t.Logf("kill %d: SIGKILL %s (hosts %d subtasks), attempt %d, checkpoint %d completed", k+1, victim, most, attempt, completedCheckpoints())
		tms[victim].signal(syscall.SIGKILL)
		delete(tms, victim)
		startTM(fmt.Sprintf("tm-%d", next))
		next++
		waitFor(t, 30*time.Second, "the job to restart", func() bool {
			j := getJob()
			return j != nil && (j.GetSummary().GetAttempt() > attempt || isEnded(j))
		})
		if j := getJob(); isEnded(j) {
			t.Fatalf("the job ended (%s: %s) instead of restarting after the kill", j.GetSummary().GetStatus(), j.GetSummary().GetFailure())
		}
	}

	var final *clusterv1.JobDetails
	waitFor(t, 90*time.Second, "the job to finish", func() bool {
		final = getJob()
		return isEnded(final)
	})
	if st := final.GetSummary().GetStatus(); st != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		t.Fatalf("job ended %s: %s", st, final.GetSummary().GetFailure())
	}
	if a := final.GetSummary().GetAttempt(); a < kills {
		t.Fatalf("job finished at attempt %d: the kills did not restart it %d times", a, kills)
	}
	restarting := 0
	for _, h := range final.GetHistory() {
		if h.GetStatus() == clusterv1.JobStatus_JOB_STATUS_RESTARTING {
			restarting++
		}
	}
	if restarting < kills {
		t.Fatalf("the job went through RESTARTING %d times, want >= %d", restarting, kills)
	}
	if ckOut, err := flowctl(t, jmAddr, "checkpoints", jobID); err != nil || !strings.Contains(ckOut, "COMPLETED") {
		t.Fatalf("flowctl checkpoints: %v\n%s", err, ckOut)
	}
	checkCounts(t, out, records, keys, atLeastOnce)
}

func isEnded(j *clusterv1.JobDetails) bool {
	if j == nil {
		return false
	}
	switch j.GetSummary().GetStatus() {
	case clusterv1.JobStatus_JOB_STATUS_FINISHED, clusterv1.JobStatus_JOB_STATUS_FAILED, clusterv1.JobStatus_JOB_STATUS_CANCELED:
		return true
	}
	return false
}

// checkCounts checks the committed output of the count operator: for every
// key k with N(k) datagen records, counts 1..N(k) each exactly once (or at
// least once), and nothing else; no uncommitted file is left.
func checkCounts(t *testing.T, dir string, records, keys int64, atLeastOnce bool) {
	t.Helper()
	want := wantCounts(records, keys)
	got := readCounts(t, dir)
	bad := 0
	for k, n := range want {
		for c := int64(1); c <= n; c++ {
			if seen := got[k][c]; seen == 0 || (!atLeastOnce && seen != 1) {
				if bad < 10 {
					t.Errorf("key %s: count %d appears %d times", k, c, seen)
				}
				bad++
			}
		}
		if len(got[k]) != int(n) {
			if bad < 10 {
				t.Errorf("key %s: %d distinct counts, want 1..%d", k, len(got[k]), n)
			}
			bad++
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d keys in the output, want %d", len(got), len(want))
	}
	if bad > 0 {
		t.Fatalf("%d wrong counts", bad)
	}
}

// wantCounts is how many records datagen produces per key.
func wantCounts(records, keys int64) map[string]int64 {
	want := map[string]int64{}
	for n := int64(0); n < records; n++ {
		want[fmt.Sprintf("k%d", datagen.KeyIndex(0, keys, n))]++
	}
	return want
}

// readCounts reads the committed output of the count operator: per key,
// how often each count appears. An uncommitted (hidden) file is an error.
func readCounts(t *testing.T, dir string) map[string]map[int64]int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[int64]int{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("uncommitted file left behind: %s", e.Name())
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l struct {
				Key   string `json:"key"`
				Count int64  `json:"count"`
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: %q: %v", e.Name(), sc.Text(), err)
			}
			if got[l.Key] == nil {
				got[l.Key] = map[int64]int{}
			}
			got[l.Key][l.Count]++
		}
		f.Close()
	}
	return got
}

// killableCluster is a real JobManager and TaskManagers tm-0 and tm-1 (4
// slots each) that a test kills and replaces: startTM starts one more (or a
// replacement) under an id, and tms holds each id's process.
type killableCluster struct {
	jmAddr  string
	client  clusterv1.JobManagerServiceClient
	tms     map[string]*proc
	startTM func(id string)
}

func startKillableCluster(t *testing.T, dir string, hbTimeout time.Duration) *killableCluster {
	t.Helper()
	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--heartbeat-timeout", hbTimeout.String(), "--log-format", "text")
	jmAddr, _ := jm.addresses()
	kc := &killableCluster{jmAddr: jmAddr, tms: map[string]*proc{}}
	kc.startTM = func(id string) {
		p := start(t, "taskmanager "+id, "--jobmanager", jmAddr, "--slots", "4", "--id", id,
			"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, id), "--log-format", "text")
		p.addresses()
		kc.tms[id] = p
	}
	kc.startTM("tm-0")
	kc.startTM("tm-1")
	kc.client = client(t, jmAddr)
	waitFor(t, 20*time.Second, "two active TaskManagers", func() bool {
		tm := taskManagers(t, kc.client)
		return tm["tm-0"] == active && tm["tm-1"] == active
	})
	return kc
}
