//go:build load

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// TestLargeJobDeploysWithoutLosingTaskManagers is the JobManager's load
// test: a job of 256 subtasks (datagen(128) -> keyBy -> count+sink(128))
// over 4 real TaskManagers with a 2 s heartbeat timeout deploys, completes
// checkpoints and stops with a savepoint, and no TaskManager is marked lost meanwhile.
// Deploy storms used to hold the JobManager's lock across store writes and
// starve heartbeats. The deploy time (submit to every subtask RUNNING) is
// logged; docs/performance.md records it.
//
// It runs alone (`make test-load`, build tag load), after `make test`: a 2 s
// heartbeat timeout measures the JobManager, not the other test packages
// sharing the two cores.
func TestLargeJobDeploysWithoutLosingTaskManagers(t *testing.T) {
	dir := t.TempDir()
	const (
		hbTimeout   = 2 * time.Second
		tms         = 4
		parallelism = 128
	)
	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--heartbeat-timeout", hbTimeout.String(), "--log-format", "text")
	jmAddr, _ := jm.addresses()
	for i := 0; i < tms; i++ {
		start(t, fmt.Sprintf("taskmanager %d", i), "--jobmanager", jmAddr, "--slots", fmt.Sprint(parallelism/tms),
			"--id", fmt.Sprintf("tm-%d", i), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
			"--data-dir", filepath.Join(dir, fmt.Sprintf("tm%d", i)))
	}
	c := client(t, jmAddr)
	waitFor(t, 20*time.Second, "four active TaskManagers", func() bool {
		n := 0
		for _, st := range taskManagers(t, c) {
			if st == active {
				n++
			}
		}
		return n == tms
	})

	// Baseline in the same run: the same job at parallelism 1 (2 subtasks).
	_, small := deployJob(t, c, jmAddr, dir, "load-2", 1, 20000)
	id, deployed := deployJob(t, c, jmAddr, dir, "load-256", parallelism, 0) // unbounded
	t.Logf("deploy time (submit to every subtask RUNNING): %d subtasks over %d TaskManagers %s; 2 subtasks %s (ratio %.1f×)",
		2*parallelism, tms, deployed.Round(time.Millisecond), small.Round(time.Millisecond), float64(deployed)/float64(small))

	getJob := func() *clusterv1.JobDetails { return jobOf(c, id) }
	noneLost := func() { t.Helper(); checkNoneLost(t, c) }
	completed := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: id})
		if err != nil {
			return 0
		}
		n := 0
		for _, ck := range r.GetCheckpoints() {
			// Retention discards all but the newest: a discarded one
			// completed too.
			switch ck.GetStatus() {
			case clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED:
				n++
			}
		}
		return n
	}
	waitFor(t, 60*time.Second, "two completed checkpoints", func() bool {
		noneLost()
		return completed() >= 2
	})
	// The source is unbounded: a stop with savepoint ends the job, which
	// takes a savepoint of all 256 subtasks and commits it before FINISHED.
	sp, stderr, err := flowctlStdout(t, jmAddr, "stop", id, "--savepoint-dir", filepath.Join(dir, "savepoints"))
	if err != nil || sp == "" {
		t.Fatalf("flowctl stop: %v\n%s\n%s", err, sp, stderr)
	}
	if st := getJob().GetSummary().GetStatus(); st != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		t.Fatalf("job after stop: %s (%s)", st, lastMessage(getJob()))
	}
	noneLost()
}

func lastMessage(j *clusterv1.JobDetails) string {
	var msgs []string
	for _, h := range j.GetHistory() {
		msgs = append(msgs, h.GetMessage())
	}
	return strings.Join(msgs, "; ")
}

func jobOf(c clusterv1.JobManagerServiceClient, id string) *clusterv1.JobDetails {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
	if err != nil {
		return nil
	}
	return r.GetJob()
}

// checkNoneLost fails the test when a TaskManager is not active.
func checkNoneLost(t *testing.T, c clusterv1.JobManagerServiceClient) {
	t.Helper()
	for tm, st := range taskManagers(t, c) {
		if st != active {
			t.Fatalf("TaskManager %s is %v while the job deploys and runs", tm, st)
		}
	}
}

// deployJob submits datagen(p) -> keyBy -> count -> blackhole with flowctl
// and returns the job id and the time from submit to every subtask
// RUNNING, checking meanwhile that no TaskManager is marked lost.
func deployJob(t *testing.T, c clusterv1.JobManagerServiceClient, jmAddr, dir, name string, p, records int) (string, time.Duration) {
	t.Helper()
	spec := fmt.Sprintf(`name: %s
parallelism: %d
maxParallelism: 256
operators:
  - id: src
    type: datagen
    uid: src-v1
    config: {count: %d, keys: 1000, rate: 20000}
  - id: count
    type: count
    uid: count-v1
    inputs: [src]
    keyBy: key
  - id: sink
    type: blackhole
    inputs: [count]
stateBackend: {type: heap}
checkpoints:
  interval: 300ms
  storage: %q
`, name, p, records, "file://"+filepath.Join(dir, "checkpoints"))
	specFile := filepath.Join(dir, name+".yaml")
	writeFile(t, specFile, spec)
	submitted := time.Now()
	out, err := flowctl(t, jmAddr, "run", "-d", specFile)
	if err != nil {
		t.Fatalf("flowctl run -d: %v\n%s", err, out)
	}
	id := strings.TrimSpace(out)
	subtasks := 0
	waitFor(t, 60*time.Second, name+": every subtask RUNNING", func() bool {
		checkNoneLost(t, c)
		j := jobOf(c, id)
		running := 0
		subtasks = 0
		for _, v := range j.GetTasks() {
			for _, s := range v.GetSubtasks() {
				subtasks++
				switch s.GetState() {
				case clusterv1.TaskState_TASK_STATE_RUNNING, clusterv1.TaskState_TASK_STATE_FINISHED:
					running++
				}
			}
		}
		if st := j.GetSummary().GetStatus(); st == clusterv1.JobStatus_JOB_STATUS_FAILED || st == clusterv1.JobStatus_JOB_STATUS_FAILING {
			t.Fatalf("job %s %v: %s", name, st, lastMessage(j))
		}
		return subtasks > 0 && running == subtasks
	})
	took := time.Since(submitted)
	if subtasks != 2*p {
		t.Fatalf("job %s has %d subtasks, want %d", name, subtasks, 2*p)
	}
	return id, took
}
