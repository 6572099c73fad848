package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// corruptSSTRE is the one line naming a corrupt state file.
var corruptSSTRE = regexp.MustCompile(`state file \S+/shared/\S+\.sst is corrupt: [^\n]*checksum mismatch`)

// TestCorruptPebbleCheckpoint: a retained native Pebble checkpoint whose
// SST files each have one flipped byte. `flowctl savepoint inspect`
// exits 1 naming a corrupt file; a job restored from it fails with the
// line naming the file, while the TaskManager process (which restored it)
// keeps running, stays registered and keeps running another job.
func TestCorruptPebbleCheckpoint(t *testing.T) {
	dir := t.TempDir()
	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "jm"), "--log-format", "text")
	jmAddr, _ := jm.addresses()
	tm := start(t, "taskmanager tm-0", "--jobmanager", jmAddr, "--slots", "4", "--id", "tm-0",
		"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "tm-0"), "--log-format", "text")
	tm.addresses()
	c := client(t, jmAddr)
	waitFor(t, 20*time.Second, "an active TaskManager", func() bool { return taskManagers(t, c)["tm-0"] == active })

	getJob := func(id string) *clusterv1.JobDetails {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := c.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
		if err != nil {
			return nil
		}
		return resp.GetJob()
	}
	running := func(id string) bool {
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
	}
	submit := func(spec string, args ...string) string {
		t.Helper()
		out, err := flowctl(t, jmAddr, append([]string{"run", "-d", spec}, args...)...)
		if err != nil {
			t.Fatalf("flowctl run %s %v: %v\n%s", spec, args, err, out)
		}
		id := strings.TrimSpace(out)
		if m := submittedRE.FindStringSubmatch(out); m != nil {
			id = m[1]
		}
		return id
	}

	// A stateless job that shares the TaskManager with the restores.
	bystander := filepath.Join(dir, "bystander.yaml")
	writeFile(t, bystander, `name: bystander
parallelism: 1
operators:
  - {id: gen, type: datagen, config: {count: 100000000, keys: 5, rate: 200}}
  - {id: out, type: blackhole, inputs: [gen]}
`)
	bystanderID := submit(bystander)
	waitFor(t, 30*time.Second, "the bystander job running", func() bool { return running(bystanderID) })
	bystanderAttempt := getJob(bystanderID).GetSummary().GetAttempt()

	storageDir := filepath.Join(dir, "checkpoints")
	spec := filepath.Join(dir, "job.yaml")
	writeFile(t, spec, fmt.Sprintf(`name: keyed-count-corrupt
parallelism: 1
maxParallelism: 128
operators:
  - {id: src, type: datagen, uid: src-v1, config: {count: 100000000, keys: 200, rate: 5000}}
  - {id: count, type: count, uid: count-v1, inputs: [src], keyBy: key}
  - {id: sink, type: blackhole, uid: sink-v1, inputs: [count]}
stateBackend:
  type: pebble
checkpoints: {interval: 300ms, incremental: true, retainOnCancel: true, storage: %q}
restart:
  strategy: none
`, "file://"+filepath.ToSlash(storageDir)))
	jobID := submit(spec)
	waitFor(t, 30*time.Second, "the keyed job running", func() bool { return running(jobID) })
	jobDir := filepath.Join(storageDir, jobID)
	// Completed checkpoints whose count state has SST files.
	waitFor(t, 30*time.Second, "a completed checkpoint with SST files", func() bool {
		mds, _ := filepath.Glob(filepath.Join(jobDir, "chk-*", "_metadata"))
		ssts, _ := filepath.Glob(filepath.Join(jobDir, "shared", "*", "*.sst"))
		more, _ := filepath.Glob(filepath.Join(jobDir, "shared", "*.sst"))
		return len(mds) > 0 && len(ssts)+len(more) > 0
	})
	if out, err := flowctl(t, jmAddr, "cancel", jobID); err != nil {
		t.Fatalf("flowctl cancel: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, "the keyed job canceled", func() bool {
		j := getJob(jobID)
		return j != nil && j.GetSummary().GetStatus() == clusterv1.JobStatus_JOB_STATUS_CANCELED
	})
	mds, _ := filepath.Glob(filepath.Join(jobDir, "chk-*", "_metadata"))
	sort.Slice(mds, func(i, j int) bool { return chkID(mds[i]) < chkID(mds[j]) })
	if len(mds) == 0 {
		t.Fatalf("no retained checkpoint under %s", jobDir)
	}
	chk := filepath.Dir(mds[len(mds)-1])

	// An intact checkpoint inspects fine.
	if out, err := flowctl(t, jmAddr, "savepoint", "inspect", chk); err != nil {
		t.Fatalf("inspect of the intact checkpoint: %v\n%s", err, out)
	}
	var flipped int
	err := filepath.WalkDir(jobDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".sst") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b[10] ^= 0xFF // inside the first data block
		flipped++
		return os.WriteFile(p, b, 0o644)
	})
	if err != nil || flipped == 0 {
		t.Fatalf("corrupting the SST files of %s: %d flipped, %v", jobDir, flipped, err)
	}

	out, err := flowctl(t, jmAddr, "savepoint", "inspect", chk)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 1 || !corruptSSTRE.MatchString(out) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("inspect of the corrupt checkpoint: exit %d, want 1 and one line naming a corrupt SST:\n%s", code, out)
	}

	restored := submit(spec, "--from-checkpoint", chk)
	var failed *clusterv1.JobDetails
	waitFor(t, 60*time.Second, "the restored job to fail", func() bool {
		failed = getJob(restored)
		return isEnded(failed)
	})
	sum := failed.GetSummary()
	if sum.GetStatus() != clusterv1.JobStatus_JOB_STATUS_FAILED || !corruptSSTRE.MatchString(sum.GetFailure()) {
		t.Fatalf("restored job ended %s: %q, want FAILED naming a corrupt SST", sum.GetStatus(), sum.GetFailure())
	}
	t.Logf("restored job failed: %s", sum.GetFailure())

	// The TaskManager that restored the corrupt files is still there,
	// still registered, and still runs the other job.
	select {
	case <-tm.exited:
		t.Fatalf("the TaskManager exited:\n%s", tm.logs())
	default:
	}
	if st := taskManagers(t, c)["tm-0"]; st != active {
		t.Fatalf("TaskManager state %v after the failed restore", st)
	}
	if !running(bystanderID) || getJob(bystanderID).GetSummary().GetAttempt() != bystanderAttempt {
		t.Fatalf("the bystander job was disturbed: %+v", getJob(bystanderID).GetSummary())
	}
}

// chkID is the id of a checkpoint's `_metadata` path (.../chk-N/_metadata).
func chkID(md string) int {
	var n int
	fmt.Sscanf(strings.TrimPrefix(filepath.Base(filepath.Dir(md)), "chk-"), "%d", &n)
	return n
}
