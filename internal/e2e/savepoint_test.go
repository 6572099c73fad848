package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// flowctlStdout runs flowctl and returns its stdout and stderr apart (the
// savepoint commands print the path on stdout, progress on stderr).
func flowctlStdout(t *testing.T, jm string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "flowctl"), append([]string{"--jobmanager", jm}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return strings.TrimSpace(o.String()), e.String(), err
}

// TestSavepointStopRescaleRestore runs the keyed-count job (datagen with a
// rate -> count keyed by key -> file sink, a uid on every operator) on a
// real JobManager and two real TaskManagers and moves it through
// savepoints: a savepoint while it runs (the job continues), stop with a
// savepoint at parallelism 1, restart from it at parallelism 3 on Pebble,
// stop with --drain, copy that savepoint elsewhere (cp -r) and finish the
// job from the copy at parallelism 2 on the heap. Before each restart
// `flowctl savepoint check` accepts the job, and `savepoint inspect` shows
// the count state. The committed output of all runs (one output
// directory: the file sink continues its part numbering and commits or
// discards across restores) equals an uninterrupted run's: for every key,
// the counts 1..N each exactly once.
func TestSavepointStopRescaleRestore(t *testing.T) {
	const (
		records = 36000
		keys    = 50
		rate    = 3000 // records/s: ~12s of input over the three runs
	)
	dir := t.TempDir()
	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--log-format", "text")
	jmAddr, _ := jm.addresses()
	var tms []*proc
	for i := 0; i < 2; i++ {
		id := fmt.Sprintf("tm-%d", i)
		p := start(t, "taskmanager "+id, "--jobmanager", jmAddr, "--slots", "4", "--id", id,
			"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, id), "--log-format", "text")
		p.addresses()
		tms = append(tms, p)
	}
	c := client(t, jmAddr)
	waitFor(t, 20*time.Second, "two active TaskManagers", func() bool {
		tm := taskManagers(t, c)
		return tm["tm-0"] == active && tm["tm-1"] == active
	})

	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "job.yaml")
	writeFile(t, spec, fmt.Sprintf(`name: keyed-count-savepoints
parallelism: 1
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
  type: heap
checkpoints: {interval: 1s, storage: %q}
`, records, keys, rate, out, "file://"+filepath.ToSlash(filepath.Join(dir, "checkpoints"))))

	getJob := func(id string) *clusterv1.JobDetails {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := c.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
		if err != nil {
			return nil
		}
		return resp.GetJob()
	}
	// generated is how many records the job's source generated so far.
	generated := func(id string) float64 { return recordsIn(tms, id, "src") }
	// work waits until the job's source generated n more records than
	// from: a share of the rated input for each run.
	work := func(id string, from, n float64) {
		t.Helper()
		waitFor(t, 30*time.Second, fmt.Sprintf("job %s to generate %.0f more records", id, n), func() bool {
			return generated(id) >= from+n
		})
	}
	// running waits until every subtask of the job runs and then lets its
	// source generate n records.
	running := func(id string, n float64) {
		t.Helper()
		waitFor(t, 30*time.Second, "job "+id+" running", func() bool {
			j := getJob(id)
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
		work(id, 0, n)
	}
	submit := func(args ...string) string {
		t.Helper()
		o, err := flowctl(t, jmAddr, append([]string{"run", "-d", spec}, args...)...)
		if err != nil {
			t.Fatalf("flowctl run %v: %v\n%s", args, err, o)
		}
		id := strings.TrimSpace(o)
		if m := submittedRE.FindStringSubmatch(o); m != nil {
			id = m[1]
		}
		if id == "" || strings.ContainsAny(id, " \n") {
			t.Fatalf("no job id in flowctl run -d output:\n%s", o)
		}
		return id
	}
	// stop stops a job with a savepoint in dir and checks that it ended
	// FINISHED with no failed subtask.
	stop := func(id, dir string, extra ...string) string {
		t.Helper()
		path, stderr, err := flowctlStdout(t, jmAddr, append([]string{"stop", id, "--savepoint-dir", dir}, extra...)...)
		if err != nil || path == "" {
			t.Fatalf("flowctl stop %s %v: %v\nstdout: %s\nstderr: %s", id, extra, err, path, stderr)
		}
		j := getJob(id)
		if st := j.GetSummary().GetStatus(); st != clusterv1.JobStatus_JOB_STATUS_FINISHED {
			t.Fatalf("job %s after stop %v: %s (%s)", id, extra, st, j.GetSummary().GetFailure())
		}
		for _, tv := range j.GetTasks() {
			for _, s := range tv.GetSubtasks() {
				if s.GetState() == clusterv1.TaskState_TASK_STATE_FAILED || s.GetFailure() != "" {
					t.Fatalf("job %s after stop %v: subtask %s/%d %s: %s", id, extra, tv.GetId(), s.GetIndex(), s.GetState(), s.GetFailure())
				}
			}
		}
		return path
	}
	check := func(sp string, sets ...string) {
		t.Helper()
		o, err := flowctl(t, jmAddr, append([]string{"savepoint", "check", spec, sp}, sets...)...)
		if err != nil || !strings.Contains(o, "compatible") || strings.Contains(o, "incompatible") {
			t.Fatalf("flowctl savepoint check %s %v: %v\n%s", sp, sets, err, o)
		}
	}
	inspect := func(sp string) {
		t.Helper()
		o, err := flowctl(t, jmAddr, "savepoint", "inspect", sp)
		if err != nil {
			t.Fatalf("flowctl savepoint inspect %s: %v\n%s", sp, err, o)
		}
		// The count operator's keyed value state "count" (int64) and the
		// source's splits are in the report.
		var countRow, splitsRow bool
		for _, l := range strings.Split(o, "\n") {
			f := strings.Fields(l)
			if len(f) >= 4 && f[0] == "count-v1" && f[1] == "count" && f[2] == "value" && f[3] == "int64" {
				countRow = true
			}
			if len(f) >= 3 && f[0] == "src-v1" && f[1] == "source-splits" && f[2] == "operator_list" {
				splitsRow = true
			}
		}
		if !countRow || !splitsRow {
			t.Fatalf("flowctl savepoint inspect %s lacks the count state or the source splits:\n%s", sp, o)
		}
	}

	// Run 1: parallelism 1, heap. A savepoint while it runs, then stop.
	job1 := submit()
	running(job1, 1.5*rate)
	sp1, stderr, err := flowctlStdout(t, jmAddr, "savepoint", "trigger", job1, "--dir", filepath.Join(dir, "d1"))
	if err != nil || sp1 == "" {
		t.Fatalf("flowctl savepoint trigger: %v\n%s\n%s", err, sp1, stderr)
	}
	if st := getJob(job1).GetSummary().GetStatus(); st != clusterv1.JobStatus_JOB_STATUS_RUNNING {
		t.Fatalf("job %s after savepoint trigger: %s, want RUNNING", job1, st)
	}
	inspect(sp1)
	work(job1, generated(job1), rate)
	sp2 := stop(job1, filepath.Join(dir, "d2"))
	inspect(sp2)
	t.Logf("run 1: savepoint %s while running, stopped with %s", sp1, sp2)

	// Run 2: parallelism 3, Pebble, from the stop savepoint; stop --drain.
	run2 := []string{"--set", "parallelism=3", "--set", "stateBackend.type=pebble"}
	check(sp2)
	check(sp2, run2...)
	job2 := submit(append([]string{"--from-checkpoint", sp2}, run2...)...)
	running(job2, 3*rate)
	sp3 := stop(job2, filepath.Join(dir, "d3"), "--drain")
	inspect(sp3)

	// Copy the savepoint (it is relocatable) and remove the original.
	local := strings.TrimPrefix(sp3, "file://")
	copied := filepath.Join(dir, "moved", filepath.Base(local))
	if err := os.MkdirAll(filepath.Dir(copied), 0o755); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command("cp", "-r", local, copied).CombinedOutput(); err != nil {
		t.Fatalf("cp -r %s %s: %v\n%s", local, copied, err, o)
	}
	if err := os.RemoveAll(local); err != nil {
		t.Fatal(err)
	}
	t.Logf("run 2: stopped with --drain into %s, copied to %s", sp3, copied)

	// Run 3: parallelism 2 (set per operator too), heap, from the copy; it
	// runs to the end of the input.
	run3 := []string{"--set", "parallelism=2", "--set", "operators.src.parallelism=2", "--set", "stateBackend.type=heap"}
	check(copied, "--set", "stateBackend.type=pebble", "--set", "parallelism=3")
	check(copied, run3...)
	o, err := flowctl(t, jmAddr, append([]string{"run", spec, "--from-checkpoint", copied}, run3...)...)
	if err != nil || !strings.Contains(o, "FINISHED") {
		t.Fatalf("flowctl run from %s: %v\n%s", copied, err, o)
	}
	checkCounts(t, out, records, keys, false)
}
