//go:build nexmark

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// TestNexmarkRecovery measures, for Nexmark q5, q7 and q20
// (examples/nexmark), the time from a TaskManager SIGKILL to processing
// resumed: a real JobManager and TaskManagers built with the queries' Go
// functions (examples/nexmark/cmd), the query over an unbounded nexmark
// source throttled to -rate events/s, checkpoints every 10 s on Pebble,
// the stock defaults for failure detection (heartbeat timeout 10 s; a
// broken exchange stream reports sooner) and restarts (fixed delay 1 s), and
// a spare TaskManager already registered. Once a checkpoint has completed
// it kills the TaskManager running the query's stateful task, and reports
// the time until the job's attempt changed (failure detected), until every
// subtask of the new attempt runs, and until that task's records-in counter
// on the live TaskManagers moves again (records flow past the restored
// checkpoint). It reports times; it asserts only that recovery happens.
//
//	go test -tags nexmark ./internal/e2e -run NexmarkRecovery -v
func TestNexmarkRecovery(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"jobmanager", "taskmanager", "flowctl"} {
		build := exec.Command("go", "build", "-o", filepath.Join(binDir, "nexmark-"+b), "./examples/nexmark/cmd/"+b)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build nexmark %s: %v\n%s", b, err, out)
		}
	}
	for _, q := range []struct{ name, task string }{
		{"q5", "counts"}, {"q7", "joined"}, {"q20", "joined"},
	} {
		t.Run(q.name, func(t *testing.T) { nexmarkRecovery(t, root, q.name, q.task) })
	}
}

func nexmarkRecovery(t *testing.T, root, q, task string) {
	const rate = 20000
	dir := t.TempDir()
	jm := start(t, "nexmark-jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--log-format", "text")
	jmAddr, _ := jm.addresses()
	tms := map[string]*proc{}
	for _, id := range []string{"tm-0", "tm-1", "tm-2"} {
		p := start(t, "nexmark-taskmanager "+id, "--jobmanager", jmAddr, "--slots", "8", "--id", id,
			"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, id), "--log-format", "text")
		p.addresses()
		tms[id] = p
	}
	c := client(t, jmAddr)
	waitFor(t, 20*time.Second, "three active TaskManagers", func() bool {
		tm := taskManagers(t, c)
		return tm["tm-0"] == active && tm["tm-1"] == active && tm["tm-2"] == active
	})

	spec, err := os.ReadFile(filepath.Join(root, "examples/nexmark", q+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(spec), "config: {count: 1000000}", fmt.Sprintf("config: {count: 0, rate: %d, throttle: true}", rate), 1)
	if text == string(spec) {
		t.Fatalf("%s.yaml: no events config {count: 1000000} to make unbounded", q)
	}
	text += fmt.Sprintf("checkpoints: {interval: 10s, storage: %q}\nstateBackend: {type: pebble}\n",
		"file://"+filepath.ToSlash(filepath.Join(dir, "checkpoints")))
	specPath := filepath.Join(dir, q+".yaml")
	writeFile(t, specPath, text)
	out, err := exec.Command(filepath.Join(binDir, "nexmark-flowctl"), "--jobmanager", jmAddr, "run", "-d", specPath).CombinedOutput()
	if err != nil {
		t.Fatalf("flowctl run: %v\n%s", err, out)
	}
	jobID := strings.TrimSpace(string(out))
	if m := submittedRE.FindStringSubmatch(string(out)); m != nil {
		jobID = m[1]
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.CancelJob(ctx, &clusterv1.CancelJobRequest{JobId: jobID})
	})
	getJob := func() *clusterv1.JobDetails {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := c.GetJob(ctx, &clusterv1.GetJobRequest{JobId: jobID})
		if err != nil {
			return nil
		}
		return resp.GetJob()
	}
	completed := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: jobID})
		if err != nil {
			return false
		}
		for _, cp := range resp.GetCheckpoints() {
			if cp.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED {
				return true
			}
		}
		return false
	}
	waitFor(t, 60*time.Second, "a completed checkpoint", completed)
	j := getJob()
	victim := ""
	for _, tv := range j.GetTasks() {
		for _, op := range tv.GetOperators() {
			if op == task && len(tv.GetSubtasks()) > 0 {
				victim = tv.GetSubtasks()[0].GetTaskManagerId()
			}
		}
	}
	if tms[victim] == nil {
		t.Fatalf("no TaskManager runs task %q: %v", task, j.GetTasks())
	}
	var live []*proc
	for id, p := range tms {
		if id != victim {
			live = append(live, p)
		}
	}
	attempt := j.GetSummary().GetAttempt()
	killed := time.Now()
	tms[victim].signal(syscall.SIGKILL)
	var restarted, running time.Duration
	waitFor(t, 60*time.Second, "the job to restart", func() bool {
		j := getJob()
		return j != nil && j.GetSummary().GetAttempt() > attempt
	})
	restarted = time.Since(killed)
	waitFor(t, 60*time.Second, "every subtask of the new attempt to run", func() bool {
		j := getJob()
		if j == nil || j.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RUNNING {
			return false
		}
		for _, tv := range j.GetTasks() {
			for _, s := range tv.GetSubtasks() {
				if s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING {
					return false
				}
			}
		}
		return true
	})
	running = time.Since(killed)
	// The old attempt's subtasks are gone now; the new ones continue their
	// counters, published every publishInterval: resumed is late by at most that.
	before := recordsIn(live, jobID, task)
	waitFor(t, 60*time.Second, "records to flow into "+task+" again", func() bool {
		return recordsIn(live, jobID, task) > before
	})
	resumed := time.Since(killed)
	t.Logf("%s: SIGKILL of %s (runs %q) -> restart %.2f s, all subtasks running %.2f s, records flowing %.2f s",
		q, victim, task, restarted.Seconds(), running.Seconds(), resumed.Seconds())
	fmt.Printf("| %s | %.2f | %.2f | %.2f |\n", q, restarted.Seconds(), running.Seconds(), resumed.Seconds())
}
