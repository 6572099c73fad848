//go:build docker

package dockertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/pkg/connectors/datagen"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

const (
	active = clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE
	lost   = clusterv1.TaskManagerState_TASK_MANAGER_STATE_LOST
	// hbTimeout is the JobManager's --heartbeat-timeout in the test cluster.
	hbTimeout = 4 * time.Second
)

// cluster is one compose project of deploy/docker-compose.yml.
type cluster struct {
	t       *testing.T
	root    string   // repository root
	compose []string // "docker compose" or "docker-compose"
	files   []string // compose files, relative to root
	project string
	env     []string
	rpc     string // the JobManager's published gRPC address
	flowctl string // host flowctl (static, staged by stage.sh)
	work    string // host scratch dir
	jm      clusterv1.JobManagerServiceClient
	// anonymous are the /data volumes of TaskManager containers that
	// `down` (without -v) leaves behind; cleanup removes them.
	anonymous []string
}

var anonymousRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// rememberAnonymousVolumes records the anonymous volumes of the project's
// containers (the TaskManagers' /data).
func (c *cluster) rememberAnonymousVolumes() {
	c.t.Helper()
	for id := range c.containers("taskmanager") {
		out := c.must(30*time.Second, "docker", "inspect", "-f", `{{range .Mounts}}{{.Name}} {{end}}`, id)
		for _, v := range strings.Fields(out) {
			if anonymousRE.MatchString(v) {
				c.anonymous = append(c.anonymous, v)
			}
		}
	}
}

// composeCommand finds the Compose tool: the v2 plugin or docker-compose.
func composeCommand(t *testing.T) []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	t.Fatal("neither `docker compose` nor `docker-compose` works: install the Compose tool")
	return nil
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// run runs a command with the cluster's environment and returns its
// combined output.
func (c *cluster) run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.root
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) must(timeout time.Duration, name string, args ...string) string {
	c.t.Helper()
	out, err := c.run(timeout, name, args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// composeArgs prefixes args with the compose file and project.
func (c *cluster) composeArgs(args ...string) (string, []string) {
	all := append([]string{}, c.compose[1:]...)
	for _, f := range c.files {
		all = append(all, "-f", f)
	}
	all = append(all, "-p", c.project)
	return c.compose[0], append(all, args...)
}

func (c *cluster) composeRun(timeout time.Duration, args ...string) string {
	c.t.Helper()
	name, all := c.composeArgs(args...)
	return c.must(timeout, name, all...)
}

// containers lists the project's containers of a service (all states):
// id -> status.
func (c *cluster) containers(service string) map[string]string {
	c.t.Helper()
	out := c.must(30*time.Second, "docker", "ps", "-a", "--no-trunc",
		"--filter", "label=com.docker.compose.project="+c.project,
		"--filter", "label=com.docker.compose.service="+service,
		"--format", "{{.ID}}\t{{.Status}}")
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if id, st, ok := strings.Cut(l, "\t"); ok {
			m[id] = st
		}
	}
	return m
}

// waitHealthy waits until the service has exactly n containers, all
// running and healthy.
func (c *cluster) waitHealthy(service string, n int, timeout time.Duration) {
	c.t.Helper()
	var last map[string]string
	c.waitFor(timeout, fmt.Sprintf("%d healthy %s container(s)", n, service), func() bool {
		last = c.containers(service)
		healthy := 0
		for _, st := range last {
			if strings.HasPrefix(st, "Up") && strings.Contains(st, "(healthy)") {
				healthy++
			}
		}
		return healthy == n && len(last) == n
	}, func() string { return fmt.Sprint(last) })
}

// waitFor polls cond every 200ms until it holds; on timeout it fails with
// what and, if given, detail().
func (c *cluster) waitFor(timeout time.Duration, what string, cond func() bool, detail ...func() string) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			for _, d := range detail {
				msg += "\n" + d()
			}
			c.t.Fatalf("timed out after %s waiting for %s%s", timeout, what, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// connect (re)dials the JobManager's published gRPC port.
func (c *cluster) connect() {
	c.t.Helper()
	conn, err := grpc.NewClient(c.rpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	c.jm = clusterv1.NewJobManagerServiceClient(conn)
}

func (c *cluster) taskManagers() map[string]clusterv1.TaskManagerState {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.jm.ListTaskManagers(ctx, &clusterv1.ListTaskManagersRequest{})
	if err != nil {
		return nil
	}
	m := map[string]clusterv1.TaskManagerState{}
	for _, tm := range resp.GetTaskManagers() {
		m[tm.GetId()] = tm.GetState()
	}
	return m
}

func (c *cluster) activeTaskManagers() []string {
	var ids []string
	for id, st := range c.taskManagers() {
		if st == active {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func (c *cluster) job(id string) *clusterv1.JobDetails {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
	if err != nil {
		return nil
	}
	return resp.GetJob()
}

func (c *cluster) checkpoints(id string) *clusterv1.ListCheckpointsResponse {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.jm.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: id})
	if err != nil {
		return nil
	}
	return resp
}

// latestCheckpoint is the newest completed checkpoint id (retention turns
// older completed ones DISCARDED).
func (c *cluster) latestCheckpoint(id string) int64 {
	var n int64
	for _, cp := range c.checkpoints(id).GetCheckpoints() {
		switch cp.GetStatus() {
		case clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED:
			n = max(n, cp.GetId())
		}
	}
	return n
}

func describe(j *clusterv1.JobDetails) string {
	if j == nil {
		return "job: no answer"
	}
	s := fmt.Sprintf("job %s: %s attempt %d %s;", j.GetSummary().GetJobId(), j.GetSummary().GetStatus(), j.GetSummary().GetAttempt(), j.GetSummary().GetFailure())
	for _, tv := range j.GetTasks() {
		for _, st := range tv.GetSubtasks() {
			s += fmt.Sprintf(" %s/%d@%s:%s", tv.GetId(), st.GetIndex(), st.GetTaskManagerId(), st.GetState())
		}
	}
	return s
}

// running reports whether the job is RUNNING with every subtask RUNNING.
func running(j *clusterv1.JobDetails) bool {
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

func ended(j *clusterv1.JobDetails) bool {
	if j == nil {
		return false
	}
	switch j.GetSummary().GetStatus() {
	case clusterv1.JobStatus_JOB_STATUS_FINISHED, clusterv1.JobStatus_JOB_STATUS_FAILED, clusterv1.JobStatus_JOB_STATUS_CANCELED:
		return true
	}
	return false
}

// hosts counts the job's subtasks per TaskManager.
func hosts(j *clusterv1.JobDetails) map[string]int {
	m := map[string]int{}
	for _, tv := range j.GetTasks() {
		for _, s := range tv.GetSubtasks() {
			m[s.GetTaskManagerId()]++
		}
	}
	return m
}

func (c *cluster) waitRunning(id string, timeout time.Duration) *clusterv1.JobDetails {
	c.t.Helper()
	var j *clusterv1.JobDetails
	c.waitFor(timeout, "job "+id+" running", func() bool {
		j = c.job(id)
		return running(j)
	}, func() string { return describe(j) })
	return j
}

func (c *cluster) waitFinished(id string, timeout time.Duration) *clusterv1.JobDetails {
	c.t.Helper()
	var j *clusterv1.JobDetails
	c.waitFor(timeout, "job "+id+" to end", func() bool {
		j = c.job(id)
		return ended(j)
	}, func() string { return describe(j) })
	if st := j.GetSummary().GetStatus(); st != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		c.t.Fatalf("job %s ended %s: %s", id, st, j.GetSummary().GetFailure())
	}
	return j
}

// waitCheckpoints waits for n more completed checkpoints of the job.
func (c *cluster) waitCheckpoints(id string, n int64, timeout time.Duration) {
	c.t.Helper()
	base := c.latestCheckpoint(id)
	c.waitFor(timeout, fmt.Sprintf("%d more checkpoints of %s after %d", n, id, base), func() bool {
		return c.latestCheckpoint(id) >= base+n
	}, func() string { return describe(c.job(id)) })
}

// flowctlOut runs the host flowctl against the published JobManager port.
func (c *cluster) flowctlOut(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(c.flowctl, append([]string{"--jobmanager", c.rpc}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return strings.TrimSpace(o.String()), e.String(), err
}

var submittedRE = regexp.MustCompile(`submitted job "[^"]*" as (\S+)`)

// submit runs `flowctl run -d spec... args...` and returns the job id.
func (c *cluster) submit(spec []string, args ...string) string {
	c.t.Helper()
	o, e, err := c.flowctlOut(append(append([]string{"run", "-d"}, spec...), args...)...)
	if err != nil {
		c.t.Fatalf("flowctl run %s %v: %v\n%s\n%s", spec, args, err, o, e)
	}
	id := o
	if m := submittedRE.FindStringSubmatch(o + e); m != nil {
		id = m[1]
	}
	if id == "" || strings.ContainsAny(id, " \n") {
		c.t.Fatalf("no job id in flowctl run -d output:\n%s\n%s", o, e)
	}
	return id
}

// keyedCount is deploy/examples/keyed-count.yaml (datagen -> count keyed
// by key -> file sink under /shared/out/<out> inside the containers, no
// checkpoints.storage: the JobManager's default, the S3 service) with the
// test's sizes, as flowctl run arguments.
func (c *cluster) keyedCount(name string, records, keys, rate, parallelism int, out string) []string {
	return []string{filepath.Join(c.root, "deploy", "examples", "keyed-count.yaml"),
		"--set", "name=" + name,
		"--set", fmt.Sprintf("parallelism=%d", parallelism),
		"--set", fmt.Sprintf("operators.src.config.count=%d", records),
		"--set", fmt.Sprintf("operators.src.config.keys=%d", keys),
		"--set", fmt.Sprintf("operators.src.config.rate=%d", rate),
		"--set", "operators.sink.config.path=/shared/out/" + out,
		"--set", "checkpoints.interval=500ms",
	}
}

// fetchOutput copies /shared/out/<out> out of the JobManager container (it
// mounts the shared volume too) into the host scratch dir.
func (c *cluster) fetchOutput(out string) string {
	c.t.Helper()
	return c.fetchOutputFrom("jobmanager", out)
}

// fetchOutputFrom copies /shared/out/<out> out of service's container.
func (c *cluster) fetchOutputFrom(service, out string) string {
	c.t.Helper()
	jm := strings.TrimSpace(c.composeRun(30*time.Second, "ps", "-q", service))
	dst := filepath.Join(c.work, "out-"+out+"-"+randomHex(3))
	c.must(60*time.Second, "docker", "cp", jm+":/shared/out/"+out, dst)
	return dst
}

// checkCounts checks the committed output of a keyed count: for every key
// with N records, counts 1..N each exactly once, nothing else. Hidden
// (uncommitted) part files fail the check unless allowHidden; they are
// expected only where a job ended without finishing (the JobManager was
// stopped under it) and a new job restored from its checkpoint.
func checkCounts(t *testing.T, dir string, records, keys int64, allowHidden bool) {
	t.Helper()
	want := map[string]int64{}
	for n := int64(0); n < records; n++ {
		want[fmt.Sprintf("k%d", datagen.KeyIndex(0, keys, n))]++
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[int64]int{}
	hidden, files := 0, 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			hidden++
			if !allowHidden {
				t.Errorf("uncommitted part file left behind: %s", e.Name())
			}
			continue
		}
		files++
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
	bad := 0
	for k, n := range want {
		for i := int64(1); i <= n; i++ {
			if seen := got[k][i]; seen != 1 {
				if bad < 10 {
					t.Errorf("key %s: count %d appears %d times, want exactly once", k, i, seen)
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
		t.Fatalf("%d wrong counts in %d committed part files", bad, files)
	}
	t.Logf("output %s: %d records over %d keys exactly once in %d committed part files (%d uncommitted left by ended attempts)", filepath.Base(dir), records, keys, files, hidden)
}

// TestComposeCluster brings the compose cluster up from images built
// offline and drives it through the failures a local cluster meets, each
// checked from the host through the published JobManager port:
//
//  1. `up -d --build` from no images: all containers healthy, `flowctl
//     taskmanagers` lists both TaskManagers.
//  2. `docker kill` of the TaskManager running a checkpointed keyed count:
//     the job recovers on the other one.
//  3. `up -d --scale taskmanager=3`: with one slot per TaskManager, the job
//     stopped with a savepoint and restored at parallelism 3 runs a subtask
//     on each of the three, and the output of both runs is exactly once.
//  4. `docker network disconnect` of a TaskManager running a job: it is
//     marked LOST, the job recovers on the other two, the output is
//     exactly once; reconnected, it registers again.
//  5. `restart jobmanager`: the job history survives (volume), every
//     TaskManager registers again.
//  6. `down` and `up` (volumes kept) under a running job: restored from its
//     retained checkpoint on S3, the job's output is exactly once.
//  7. `up` with the high-availability overlay (a standby JobManager on the
//     same volume) and `docker kill` of the leader under a running job: the
//     standby leads, the TaskManagers follow, and the job resumes from its
//     latest checkpoint; its output is exactly once.
func TestComposeCluster(t *testing.T) {
	start := time.Now()
	_, file, _, _ := runtime.Caller(0)
	root, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("docker not found: the docker tests need a Docker engine")
	}
	c := &cluster{t: t, root: root, compose: composeCommand(t), files: []string{"deploy/docker-compose.yml"}, project: "flowdt" + randomHex(4), work: t.TempDir()}
	c.flowctl = filepath.Join(root, "deploy", "image", "bin", "flowctl")
	rpcPort, standbyPort := freePort(t), freePort(t)
	c.rpc = "127.0.0.1:" + rpcPort
	image, s3Image := "flow-dockertest:"+c.project, "flow-s3-dockertest:"+c.project
	c.env = append(os.Environ(),
		"FLOW_IMAGE="+image, "FLOW_S3_IMAGE="+s3Image,
		"FLOW_JOBMANAGER_RPC_PORT="+rpcPort, "FLOW_JOBMANAGER_HTTP_PORT="+freePort(t), "FLOW_S3_PORT="+freePort(t),
		"FLOW_JOBMANAGER_STANDBY_RPC_PORT="+standbyPort, "FLOW_JOBMANAGER_STANDBY_HTTP_PORT="+freePort(t),
		// One slot per TaskManager: a job at parallelism n needs n of them.
		"FLOW_TASKMANAGER_SLOTS=1",
		"FLOW_HEARTBEAT_TIMEOUT="+hbTimeout.String(),
		"FLOW_SLOT_TIMEOUT=90s",
	)
	t.Logf("compose tool %q, project %s, JobManager on %s", strings.Join(c.compose, " "), c.project, c.rpc)

	// Host-built static binaries for the images (and the host flowctl).
	if out, err := c.run(10*time.Minute, filepath.Join(root, "deploy", "image", "stage.sh")); err != nil {
		t.Fatalf("deploy/image/stage.sh: %v\n%s", err, out)
	}
	for _, img := range []string{image, s3Image} {
		if _, err := c.run(30*time.Second, "docker", "image", "inspect", img); err == nil {
			t.Fatalf("image %s exists before the test: not a clean state", img)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			name, args := c.composeArgs("logs", "--no-color", "--tail", "60")
			out, _ := c.run(time.Minute, name, args...)
			t.Logf("---- compose logs ----\n%s", out)
		}
		name, args := c.composeArgs("down", "-v", "--remove-orphans", "-t", "5")
		if out, err := c.run(3*time.Minute, name, args...); err != nil {
			t.Errorf("compose down -v: %v\n%s", err, out)
		}
		if len(c.anonymous) > 0 {
			_, _ = c.run(time.Minute, "docker", append([]string{"volume", "rm", "-f"}, c.anonymous...)...)
		}
		_, _ = c.run(time.Minute, "docker", "rmi", "-f", image, s3Image)
		t.Logf("whole test incl. cleanup: %s", time.Since(start).Round(time.Second))
	})

	// 1. Up from a clean state: compose builds both images offline.
	t0 := time.Now()
	c.composeRun(10*time.Minute, "up", "-d", "--build")
	c.waitHealthy("s3", 1, 2*time.Minute)
	c.waitHealthy("jobmanager", 1, 2*time.Minute)
	c.waitHealthy("taskmanager", 2, 2*time.Minute)
	for _, img := range []string{image, s3Image} {
		c.must(30*time.Second, "docker", "image", "inspect", img)
	}
	t.Logf("1. up --build from no images to a healthy cluster: %s", time.Since(t0).Round(100*time.Millisecond))
	c.connect()
	c.waitFor(30*time.Second, "two active TaskManagers", func() bool { return len(c.activeTaskManagers()) == 2 })
	tmOut, tmErr, err := c.flowctlOut("taskmanagers")
	if err != nil {
		t.Fatalf("flowctl taskmanagers: %v\n%s", err, tmErr)
	}
	for _, id := range c.activeTaskManagers() {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(id) + `\s+\S+:6124\s+ACTIVE\s+1\s`).MatchString(tmOut) {
			t.Fatalf("flowctl taskmanagers does not list %s as ACTIVE with 1 slot:\n%s", id, tmOut)
		}
	}
	t.Logf("flowctl taskmanagers from the host:\n%s", tmOut)

	// 2. docker kill of the TaskManager running job A.
	const recA, keysA = 60000, 50
	specA := c.keyedCount("job-a", recA, keysA, 2000, 1, "a")
	jobA := c.submit(specA)
	j := c.waitRunning(jobA, time.Minute)
	c.waitCheckpoints(jobA, 2, time.Minute)
	var victim string
	for id := range hosts(j) {
		victim = id
	}
	attempt := j.GetSummary().GetAttempt()
	t0 = time.Now()
	// A TaskManager's id is tm-<container host name>, the short container id.
	c.must(30*time.Second, "docker", "kill", strings.TrimPrefix(victim, "tm-"))
	c.waitFor(2*hbTimeout+5*time.Second, victim+" marked LOST", func() bool { return c.taskManagers()[victim] == lost })
	lostAfter := time.Since(t0)
	c.waitFor(time.Minute, "job A to restart on the other TaskManager", func() bool {
		j = c.job(jobA)
		_, onVictim := hosts(j)[victim]
		return running(j) && j.GetSummary().GetAttempt() > attempt && !onVictim
	}, func() string { return describe(j) })
	t.Logf("2. docker kill %s: LOST after %s, job A running again (attempt %d) after %s on %v",
		victim, lostAfter.Round(100*time.Millisecond), j.GetSummary().GetAttempt(), time.Since(t0).Round(100*time.Millisecond), hosts(j))
	c.waitCheckpoints(jobA, 1, time.Minute)

	// 3. Scale to three TaskManagers (the killed container starts again
	// and a new one is created), then restore job A at parallelism 3.
	t0 = time.Now()
	c.composeRun(5*time.Minute, "up", "-d", "--scale", "taskmanager=3")
	c.waitHealthy("taskmanager", 3, 2*time.Minute)
	c.waitFor(time.Minute, "three active TaskManagers", func() bool { return len(c.activeTaskManagers()) == 3 })
	t.Logf("3. up --scale taskmanager=3: three active TaskManagers after %s: %v", time.Since(t0).Round(100*time.Millisecond), c.activeTaskManagers())
	if ended(c.job(jobA)) {
		t.Fatalf("job A ended before the rescale: make it longer (%s)", describe(c.job(jobA)))
	}
	sp, spErr, err := c.flowctlOut("stop", jobA)
	if err != nil || !strings.HasPrefix(sp, "s3://flow/savepoints") {
		t.Fatalf("flowctl stop %s: %v\nstdout: %s\nstderr: %s", jobA, err, sp, spErr)
	}
	jobB := c.submit(c.keyedCount("job-a", recA, keysA, 2000, 3, "a"), "--from-checkpoint", sp)
	j = c.waitRunning(jobB, 2*time.Minute)
	if h := hosts(j); len(h) != 3 {
		t.Fatalf("job B at parallelism 3 runs on %d TaskManagers %v, want all 3 (one slot each)", len(h), h)
	}
	t.Logf("job B restored from %s at parallelism 3 on %v", sp, hosts(j))
	c.waitFinished(jobB, 2*time.Minute)
	checkCounts(t, c.fetchOutput("a"), recA, keysA, false)

	// 4. Cut a TaskManager running job C off the network.
	const recC, keysC = 40000, 40
	specC := c.keyedCount("job-c", recC, keysC, 2500, 2, "c")
	jobC := c.submit(specC)
	j = c.waitRunning(jobC, time.Minute)
	c.waitCheckpoints(jobC, 2, time.Minute)
	victim = ""
	for id := range hosts(j) {
		if victim == "" || id < victim {
			victim = id
		}
	}
	attempt = j.GetSummary().GetAttempt()
	network := c.project + "_default"
	t0 = time.Now()
	c.must(30*time.Second, "docker", "network", "disconnect", network, strings.TrimPrefix(victim, "tm-"))
	c.waitFor(2*hbTimeout+5*time.Second, victim+" marked LOST", func() bool { return c.taskManagers()[victim] == lost })
	lostAfter = time.Since(t0)
	c.waitFor(time.Minute, "job C to restart on the other two TaskManagers", func() bool {
		j = c.job(jobC)
		_, onVictim := hosts(j)[victim]
		return running(j) && j.GetSummary().GetAttempt() > attempt && !onVictim
	}, func() string { return describe(j) })
	t.Logf("4. network disconnect %s: LOST after %s, job C running again (attempt %d) after %s on %v",
		victim, lostAfter.Round(100*time.Millisecond), j.GetSummary().GetAttempt(), time.Since(t0).Round(100*time.Millisecond), hosts(j))
	// Reconnect under the service's DNS name too (disconnect drops it).
	c.must(30*time.Second, "docker", "network", "connect", "--alias", "taskmanager", network, strings.TrimPrefix(victim, "tm-"))
	t0 = time.Now()
	c.waitFor(time.Minute, victim+" registered again", func() bool { return c.taskManagers()[victim] == active })
	t.Logf("reconnected %s: ACTIVE again after %s", victim, time.Since(t0).Round(100*time.Millisecond))
	c.waitFinished(jobC, 2*time.Minute)
	// The cut-off TaskManager's attempt could not commit (commits follow the
	// JobManager's checkpoint notifications); its in-progress parts stay
	// hidden.
	checkCounts(t, c.fetchOutput("c"), recC, keysC, true)

	// 5. Restart the JobManager: history from its volume, TaskManagers back.
	tmsBefore := c.activeTaskManagers()
	t0 = time.Now()
	c.composeRun(3*time.Minute, "restart", "jobmanager")
	c.waitHealthy("jobmanager", 1, 2*time.Minute)
	c.waitFor(time.Minute, "every TaskManager registered with the restarted JobManager", func() bool {
		return strings.Join(c.activeTaskManagers(), ",") == strings.Join(tmsBefore, ",")
	}, func() string { return fmt.Sprint(c.taskManagers()) })
	t.Logf("5. restart jobmanager: %v registered again after %s", tmsBefore, time.Since(t0).Round(100*time.Millisecond))
	listOut, listErr, err := c.flowctlOut("list")
	if err != nil {
		t.Fatalf("flowctl list after the restart: %v\n%s", err, listErr)
	}
	for _, id := range []string{jobA, jobB, jobC} {
		if !strings.Contains(listOut, id) {
			t.Fatalf("restarted JobManager does not list job %s:\n%s", id, listOut)
		}
		if st := c.job(id).GetSummary().GetStatus(); st != clusterv1.JobStatus_JOB_STATUS_FINISHED {
			t.Fatalf("job %s after the JobManager restart: %s, want FINISHED", id, st)
		}
	}

	// 6. down and up with the volumes kept, under a running job D.
	const recD, keysD = 48000, 30
	specD := c.keyedCount("job-d", recD, keysD, 2000, 2, "d")
	jobD := c.submit(specD)
	c.waitRunning(jobD, time.Minute)
	c.waitCheckpoints(jobD, 3, time.Minute)
	t0 = time.Now()
	c.rememberAnonymousVolumes()
	c.composeRun(3*time.Minute, "down")
	c.composeRun(5*time.Minute, "up", "-d")
	c.waitHealthy("jobmanager", 1, 2*time.Minute)
	c.waitHealthy("taskmanager", 2, 2*time.Minute)
	c.waitFor(time.Minute, "two active TaskManagers after up", func() bool { return len(c.activeTaskManagers()) == 2 })
	t.Logf("6. down + up: healthy with %v after %s", c.activeTaskManagers(), time.Since(t0).Round(100*time.Millisecond))
	jd := c.job(jobD)
	if jd == nil || !ended(jd) {
		t.Fatalf("job D after down/up: %s, want it ended (its JobManager was stopped under it)", describe(jd))
	}
	var restore string
	c.waitFor(30*time.Second, "job D's retained checkpoint in the restarted JobManager", func() bool {
		restore = c.checkpoints(jobD).GetLatestCompletedPath()
		return restore != ""
	})
	if !strings.HasPrefix(restore, "s3://flow/checkpoints") {
		t.Fatalf("job D's latest checkpoint %q is not on the S3 service", restore)
	}
	jobE := c.submit(specD, "--from-checkpoint", restore)
	c.waitFinished(jobE, 2*time.Minute)
	t.Logf("job D was %s after down/up; job E restored from %s and finished", jd.GetSummary().GetStatus(), restore)
	checkCounts(t, c.fetchOutput("d"), recD, keysD, true)

	// 7. High availability: the overlay adds a standby JobManager on the
	// JobManager's volume (and restarts the cluster's daemons with
	// --high-availability file). docker kill of the leader under a running
	// job: the standby leads, the TaskManagers register with it, and the
	// job resumes from its latest checkpoint, exactly once.
	t0 = time.Now()
	c.files = append(c.files, "deploy/docker-compose.ha.yml")
	c.composeRun(5*time.Minute, "up", "-d")
	c.waitHealthy("jobmanager", 1, 2*time.Minute)
	c.waitHealthy("jobmanager-standby", 1, 2*time.Minute)
	c.waitHealthy("taskmanager", 2, 2*time.Minute)
	c.connect()
	c.waitFor(time.Minute, "two active TaskManagers on the leader", func() bool { return len(c.activeTaskManagers()) == 2 })
	c.waitFor(30*time.Second, "the standby to wait for the lead", func() bool {
		return strings.Contains(c.composeRun(30*time.Second, "logs", "--no-color", "jobmanager-standby"), "another JobManager leads")
	})
	t.Logf("7. up with the HA overlay: leader, standby and two TaskManagers after %s", time.Since(t0).Round(100*time.Millisecond))
	const recF, keysF = 40000, 30
	jobF := c.submit(c.keyedCount("job-f", recF, keysF, 2000, 2, "f"))
	j = c.waitRunning(jobF, time.Minute)
	c.waitCheckpoints(jobF, 2, time.Minute)
	attempt = j.GetSummary().GetAttempt()
	leader := strings.TrimSpace(c.composeRun(30*time.Second, "ps", "-q", "jobmanager"))
	t0 = time.Now()
	c.must(30*time.Second, "docker", "kill", leader)
	c.waitFor(30*time.Second, "the standby to lead", func() bool {
		return strings.Contains(c.composeRun(30*time.Second, "logs", "--no-color", "jobmanager-standby"), "msg=leading")
	})
	ledAfter := time.Since(t0)
	c.rpc = "127.0.0.1:" + rpcPort + ",127.0.0.1:" + standbyPort // flowctl: whichever leads
	c.jm = nil
	conn, err := grpc.NewClient("127.0.0.1:"+standbyPort, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.jm = clusterv1.NewJobManagerServiceClient(conn)
	c.waitFor(2*hbTimeout+time.Minute, "both TaskManagers on the new leader", func() bool { return len(c.activeTaskManagers()) == 2 },
		func() string { return fmt.Sprint(c.taskManagers()) })
	c.waitFor(time.Minute, "job F to resume on the new leader", func() bool {
		j = c.job(jobF)
		return running(j) && j.GetSummary().GetAttempt() > attempt
	}, func() string { return describe(j) })
	t.Logf("docker kill of the leader: the standby led after %s; job F running again (attempt %d) after %s",
		ledAfter.Round(100*time.Millisecond), j.GetSummary().GetAttempt(), time.Since(t0).Round(100*time.Millisecond))
	c.waitFinished(jobF, 2*time.Minute)
	listOut, listErr, err = c.flowctlOut("list")
	if err != nil || !strings.Contains(listOut, jobF) {
		t.Fatalf("flowctl --jobmanager leader,standby list: %v\n%s\n%s", err, listOut, listErr)
	}
	// The killed leader's attempt could not commit after it died; its
	// in-progress parts stay hidden.
	checkCounts(t, c.fetchOutputFrom("jobmanager-standby", "f"), recF, keysF, true)
	t.Logf("scenarios done in %s", time.Since(start).Round(time.Second))
}
