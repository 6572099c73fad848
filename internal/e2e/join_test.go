package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/connectors/datagen"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// TestIntervalJoinExactlyOnceUnderKill runs an interval join of two
// datagen streams (checkpoints every 500ms, file sink) on a real
// JobManager and two real TaskManagers, SIGKILLs the TaskManager hosting
// most of its subtasks after a checkpoint, starts a replacement, and checks
// that the finished job's output is exactly the brute-force join of the
// generated records: each match once, none lost.
func TestIntervalJoinExactlyOnceUnderKill(t *testing.T) {
	const (
		records   = 20000
		keys      = 50
		rate      = 2500
		lower     = -10
		upper     = 20
		hbTimeout = 2 * time.Second
	)
	dir := t.TempDir()
	kc := startKillableCluster(t, dir, hbTimeout)
	jmAddr, c, tms, startTM := kc.jmAddr, kc.client, kc.tms, kc.startTM
	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "join.yaml")
	src := func(id string, seed int) string {
		return fmt.Sprintf("  - {id: %s, uid: %s, type: datagen, watermarks: {timestamp: ts, interval: 20ms}, config: {count: %d, keys: %d, rate: %d, seed: %d}}\n",
			id, id, records, keys, rate, seed)
	}
	writeFile(t, spec, `name: interval-join-kill
parallelism: 2
operators:
`+src("a", 1)+src("b", 2)+fmt.Sprintf(`  - id: j
    uid: j
    type: interval-join
    inputs: [{from: a, keyBy: key}, {from: b, keyBy: key}]
    config: {lower: %dms, upper: %dms}
  - {id: sink, uid: sink, type: file, inputs: [j], config: {path: %q}}
checkpoints: {interval: 500ms, storage: %q, tolerableFailures: 100}
restart: {strategy: fixed_delay, attempts: 20, delay: 500ms}
`, lower, upper, out, "file://"+filepath.ToSlash(filepath.Join(dir, "checkpoints"))))
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
	completed := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: jobID})
		if err != nil {
			return 0
		}
		var n int64
		for _, cp := range resp.GetCheckpoints() {
			if s := cp.GetStatus(); s == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED || s == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED {
				n = max(n, cp.GetId())
			}
		}
		return n
	}
	waitFor(t, 30*time.Second, "two completed checkpoints", func() bool { return completed() >= 2 })
	j := getJob()
	hosts := map[string]int{}
	for _, tv := range j.GetTasks() {
		if tv.GetId() == "j" {
			for _, s := range tv.GetSubtasks() {
				hosts[s.GetTaskManagerId()]++
			}
		}
	}
	victim := "tm-0"
	if hosts["tm-1"] > hosts["tm-0"] {
		victim = "tm-1"
	}
	attempt := j.GetSummary().GetAttempt()
	tms[victim].signal(syscall.SIGKILL)
	startTM("tm-2")
	waitFor(t, 30*time.Second, "the job to restart", func() bool {
		j := getJob()
		return j != nil && (j.GetSummary().GetAttempt() > attempt || isEnded(j))
	})
	var final *clusterv1.JobDetails
	waitFor(t, 90*time.Second, "the job to finish", func() bool {
		final = getJob()
		return isEnded(final)
	})
	if st := final.GetSummary().GetStatus(); st != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		t.Fatalf("job ended %s: %s", st, final.GetSummary().GetFailure())
	}
	if a := final.GetSummary().GetAttempt(); a <= attempt {
		t.Fatalf("job finished at attempt %d: the kill did not restart it", a)
	}

	// Brute force over the generated records.
	type rec struct {
		Key string `json:"key"`
		Seq int64  `json:"seq"`
		TS  int64  `json:"ts"`
	}
	gen := func(seed int64) []rec {
		rs := make([]rec, records)
		var buf []byte
		for n := range int64(records) {
			buf = datagen.AppendRecord(buf[:0], seed, keys, n, n*1000/rate)
			if err := json.Unmarshal(buf, &rs[n]); err != nil {
				t.Fatal(err)
			}
		}
		return rs
	}
	want := map[[2]int64]int{}
	byKey := map[string][]rec{}
	for _, y := range gen(2) {
		byKey[y.Key] = append(byKey[y.Key], y)
	}
	for _, x := range gen(1) {
		for _, y := range byKey[x.Key] {
			if y.TS+lower <= x.TS && x.TS <= y.TS+upper {
				want[[2]int64{x.Seq, y.Seq}]++
			}
		}
	}
	got := map[[2]int64]int{}
	files, _ := filepath.Glob(filepath.Join(out, "part-*"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var r struct{ Left, Right rec }
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %q: %v", f, sc.Text(), err)
			}
			got[[2]int64{r.Left.Seq, r.Right.Seq}]++
		}
		fh.Close()
	}
	bad := 0
	for k, n := range want {
		if got[k] != n {
			bad++
			if bad <= 5 {
				t.Errorf("match %v: %d in the output, want %d", k, got[k], n)
			}
		}
	}
	for k, n := range got {
		if want[k] == 0 {
			bad++
			if bad <= 5 {
				t.Errorf("match %v: %d in the output, not a match", k, n)
			}
		}
	}
	if bad > 0 || len(want) == 0 {
		t.Fatalf("%d of %d matches differ", bad, len(want))
	}
	t.Logf("%d matches exactly once across a SIGKILL of %s (attempt %d)", len(want), victim, final.GetSummary().GetAttempt())
}
