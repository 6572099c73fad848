package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

var (
	standbyRE = regexp.MustCompile(`msg="standby: serving probes" http_address=(\S+)`)
	leadingRE = regexp.MustCompile(`msg=leading id=(\S+) leader_epoch=(\d+)`)
)

// logMatch waits until p's log matches re and returns the submatches.
func logMatch(t *testing.T, p *proc, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	var m []string
	waitFor(t, timeout, fmt.Sprintf("%s to log %s", p.name, re), func() bool {
		m = re.FindStringSubmatch(p.logs())
		return m != nil
	})
	return m
}

// High availability on real processes: two JobManagers share a data dir
// with --high-availability file; one leads, the other waits as a standby
// (its /readyz says so and names the leader). TaskManagers know both
// addresses. The leader is SIGKILLed under a running job: the standby
// takes over with a higher leader epoch, the TaskManagers register with
// it, and the job resumes from its latest checkpoint as a new attempt
// (without a restart strategy) and finishes with exactly-once counts.
func TestJobManagerFailover(t *testing.T) {
	const (
		records = 30000
		keys    = 50
		rate    = 3000
	)
	dir := t.TempDir()
	shared := filepath.Join(dir, "jm")
	addrA, addrB := freeAddr(t), freeAddr(t)
	jmArgs := func(addr string) []string {
		return []string{"--rpc-address", addr, "--http-address", "127.0.0.1:0", "--data-dir", shared,
			"--high-availability", "file", "--heartbeat-timeout", "2s", "--log-format", "text"}
	}
	jmA := start(t, "jobmanager a", jmArgs(addrA)...)
	jmA.addresses()
	leadA := logMatch(t, jmA, leadingRE, 10*time.Second)
	jmB := start(t, "jobmanager b", jmArgs(addrB)...)
	standbyHTTP := logMatch(t, jmB, standbyRE, 20*time.Second)[1]
	logMatch(t, jmB, regexp.MustCompile(`standby: another JobManager leads; waiting to take over" leader=`+regexp.QuoteMeta(leadA[1])), 10*time.Second)
	resp, err := http.Get("http://" + standbyHTTP + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("standby /readyz: %s, want 503", resp.Status)
	}
	if body := httpGetStatus(t, "http://"+standbyHTTP+"/readyz"); !strings.Contains(body, "standby JobManager: "+leadA[1]) || !strings.Contains(body, addrA) {
		t.Fatalf("standby /readyz does not name the leader %s at %s: %q", leadA[1], addrA, body)
	}

	var tms []*proc
	for _, id := range []string{"tm-0", "tm-1"} {
		p := start(t, "taskmanager "+id, "--jobmanager", addrA+","+addrB, "--slots", "2", "--id", id,
			"--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, id), "--log-format", "text")
		p.addresses()
		tms = append(tms, p)
	}
	ca := client(t, addrA)
	waitFor(t, 20*time.Second, "two TaskManagers on the leader", func() bool {
		tm := taskManagers(t, ca)
		return tm["tm-0"] == active && tm["tm-1"] == active
	})

	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "job.yaml")
	writeFile(t, spec, fmt.Sprintf(`name: failover-count
parallelism: 2
operators:
  - {id: src, type: datagen, uid: src-v1, config: {count: %d, keys: %d, rate: %d}}
  - {id: count, type: count, uid: count-v1, inputs: [src], keyBy: key}
  - {id: sink, type: file, uid: sink-v1, inputs: [count], config: {path: %q}}
stateBackend: {type: pebble}
checkpoints: {interval: 500ms, storage: %q}
`, records, keys, rate, out, "file://"+filepath.ToSlash(filepath.Join(dir, "checkpoints"))))
	runOut, err := flowctl(t, addrA, "run", "-d", spec)
	if err != nil {
		t.Fatalf("flowctl run: %v\n%s", err, runOut)
	}
	jobID := strings.TrimSpace(runOut)
	if jobID == "" || strings.ContainsAny(jobID, " \n") {
		t.Fatalf("no job id in flowctl run -d output:\n%s", runOut)
	}
	jobOn := func(c clusterv1.JobManagerServiceClient) *clusterv1.JobDetails {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		r, err := c.GetJob(ctx, &clusterv1.GetJobRequest{JobId: jobID})
		if err != nil {
			return nil
		}
		return r.GetJob()
	}
	latest := func(c clusterv1.JobManagerServiceClient) string {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		r, err := c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: jobID})
		if err != nil {
			return ""
		}
		return r.GetLatestCompletedPath()
	}
	waitFor(t, 30*time.Second, "a completed checkpoint on the leader", func() bool { return latest(ca) != "" })
	waitFor(t, 20*time.Second, "the job to be past its first checkpoint", func() bool {
		j := jobOn(ca)
		return j != nil && j.GetSummary().GetStatus() == clusterv1.JobStatus_JOB_STATUS_RUNNING && strings.Contains(latest(ca), "chk-") && !strings.HasSuffix(latest(ca), "chk-1")
	})
	before := jobOn(ca).GetSummary().GetAttempt()

	t.Logf("SIGKILL the leader %s (epoch %s) at checkpoint %s", leadA[1], leadA[2], latest(ca))
	jmA.signal(syscall.SIGKILL)
	leadB := logMatch(t, jmB, leadingRE, 20*time.Second)
	if leadB[2] <= leadA[2] && len(leadB[2]) <= len(leadA[2]) {
		t.Fatalf("the new leader's epoch %s is not above the old one's %s", leadB[2], leadA[2])
	}
	jmB.addresses()
	cb := client(t, addrB)
	took := waitFor(t, 30*time.Second, "both TaskManagers on the new leader", func() bool {
		tm := taskManagers(t, cb)
		return tm["tm-0"] == active && tm["tm-1"] == active
	})
	t.Logf("the standby leads with epoch %s; TaskManagers registered with it after %s", leadB[2], took.Round(10*time.Millisecond))
	// They moved on the first failed heartbeat, once the new leader
	// answered, not after the heartbeat timeout.
	for _, p := range tms {
		logMatch(t, p, regexp.MustCompile(`another one does: registering with it" taskmanager=\S+ jobmanager=`+regexp.QuoteMeta(addrA)+` next=`+regexp.QuoteMeta(addrB)), 5*time.Second)
	}

	var final *clusterv1.JobDetails
	waitFor(t, 90*time.Second, "the job to finish on the new leader", func() bool {
		final = jobOn(cb)
		return isEnded(final)
	})
	if st := final.GetSummary().GetStatus(); st != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		t.Fatalf("job ended %s on the new leader: %s", st, final.GetSummary().GetFailure())
	}
	if a := final.GetSummary().GetAttempt(); a <= before {
		t.Fatalf("job finished at attempt %d, want above %d (a recovery)", a, before)
	}
	var tookOver bool
	for _, h := range final.GetHistory() {
		tookOver = tookOver || strings.Contains(h.GetMessage(), "took over as leader (epoch "+leadB[2]+")")
	}
	if !tookOver {
		t.Fatalf("the job's history does not show the takeover: %v", final.GetHistory())
	}
	checkCounts(t, out, records, keys, false)
	// flowctl given both addresses reaches the leader.
	if listOut, err := flowctl(t, addrA+","+addrB, "list"); err != nil || !strings.Contains(listOut, jobID) || !strings.Contains(listOut, "FINISHED") {
		t.Fatalf("flowctl --jobmanager A,B list after the failover: %v\n%s", err, listOut)
	}
}

// httpGetStatus returns the body of url whatever its status.
func httpGetStatus(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}
