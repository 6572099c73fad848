// Package e2e tests this module's own cluster binaries on real processes:
// the JobManager and TaskManagers built from ./cmd with the example-dedup
// type, driven by the STOCK flowctl of the Flow repository (built from
// github.com/flowrt/flow/cmd/flowctl, which has no example-dedup).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/pkg/connectors/datagen"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flow-sdk-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, pkgs := range [][]string{
		// The user's binaries, with the user's registry.
		{"github.com/flowrt/flow/examples/sdk/cmd/jobmanager", "github.com/flowrt/flow/examples/sdk/cmd/taskmanager"},
		// The stock flowctl: only the built-in types.
		{"github.com/flowrt/flow/cmd/flowctl"},
	} {
		build := exec.Command("go", append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkgs, ":", err)
			os.Exit(1)
		}
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// proc is a daemon started from a built binary.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    bytes.Buffer
	rpc    chan string
	exited chan struct{}
}

var listenRE = regexp.MustCompile(`msg=listening rpc_address=(\S+)`)

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, rpc: make(chan string, 1), exited: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, strings.Fields(name)[0]), append(args, "--log-format", "text")...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case p.rpc <- m[1]:
				default:
				}
			}
		}
		_ = p.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s log:\n%s", p.name, p.log.String())
			p.mu.Unlock()
		}
	})
	return p
}

func (p *proc) address() string {
	p.t.Helper()
	select {
	case a := <-p.rpc:
		return a
	case <-p.exited:
		p.t.Fatalf("%s exited before listening:\n%s", p.name, p.log.String())
	case <-time.After(20 * time.Second):
		p.t.Fatalf("%s did not log its address", p.name)
	}
	return ""
}

func (p *proc) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatalf("SIGKILL %s: %v", p.name, err)
	}
	<-p.exited
}

// flowctl runs the stock flowctl against jm; stdout and stderr apart.
func flowctl(t *testing.T, jm string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "flowctl"), append([]string{"--jobmanager", jm}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return strings.TrimSpace(o.String()), e.String(), err
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

// cluster is a real JobManager and TaskManagers of this module's binaries.
type cluster struct {
	t      *testing.T
	dir    string
	jm     string
	client clusterv1.JobManagerServiceClient
	tms    map[string]*proc
	next   int
}

func startCluster(t *testing.T, taskManagers int) *cluster {
	t.Helper()
	dir := t.TempDir()
	jm := start(t, "jobmanager", "--rpc-address", "127.0.0.1:0", "--http-address", "", "--data-dir", filepath.Join(dir, "jm"),
		"--heartbeat-timeout", "2s")
	c := &cluster{t: t, dir: dir, jm: jm.address(), tms: map[string]*proc{}}
	conn, err := grpc.NewClient(c.jm, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.client = clusterv1.NewJobManagerServiceClient(conn)
	for range taskManagers {
		c.startTM()
	}
	return c
}

func (c *cluster) startTM() {
	id := fmt.Sprintf("tm-%d", c.next)
	c.next++
	p := start(c.t, "taskmanager "+id, "--jobmanager", c.jm, "--slots", "4", "--id", id, "--rpc-address", "127.0.0.1:0",
		"--http-address", "", "--data-dir", filepath.Join(c.dir, id))
	p.address()
	c.tms[id] = p
	waitFor(c.t, 20*time.Second, id+" active", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := c.client.ListTaskManagers(ctx, &clusterv1.ListTaskManagersRequest{})
		for _, tm := range resp.GetTaskManagers() {
			if tm.GetId() == id && tm.GetState() == clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE {
				return err == nil
			}
		}
		return false
	})
}

func (c *cluster) job(id string) *clusterv1.JobDetails {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.client.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
	if err != nil {
		return nil
	}
	return resp.GetJob()
}

func (c *cluster) status(id string) clusterv1.JobStatus { return c.job(id).GetSummary().GetStatus() }

// allRunning: the job is RUNNING with every subtask running.
func (c *cluster) allRunning(id string) bool {
	j := c.job(id)
	if j.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RUNNING {
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

// completed is the highest completed checkpoint id of the job.
func (c *cluster) completed(id string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.client.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: id})
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

const jobSpec = `name: %s
parallelism: 2
operators:
  - id: src
    type: datagen
    uid: src-v1
    config: {count: %d, keys: %d, rate: %d}
  - id: unique
    type: example-dedup
    uid: unique-v1
    inputs: [src]
    keyBy: key
    config: {ttl: 1h}
  - id: sink
    type: file
    uid: sink-v1
    inputs: [unique]
    config: {path: %q}
stateBackend: {type: pebble}
checkpoints: {interval: 500ms, mode: exactly_once, storage: %q, tolerableFailures: 100}
restart: {strategy: fixed_delay, attempts: 50, delay: 500ms}
`

func (c *cluster) writeSpec(name string, records, keys, rate int, out string) string {
	path := filepath.Join(c.dir, name+".yaml")
	text := fmt.Sprintf(jobSpec, name, records, keys, rate, out, "file://"+filepath.ToSlash(filepath.Join(c.dir, "checkpoints")))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// checkOnce asserts the committed output holds every generated key
// exactly once: what an uninterrupted run writes.
func checkOnce(t *testing.T, out string, records, keys int64) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(out, "part-*"))
	got := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			var r struct {
				Key string `json:"key"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%s: %q: %v", f, line, err)
			}
			got[r.Key]++
		}
	}
	want := map[string]bool{}
	for i := range records {
		want[fmt.Sprintf("k%d", datagen.KeyIndex(0, keys, i))] = true
	}
	dups, missing := 0, 0
	for k, n := range got {
		if n != 1 || !want[k] {
			dups++
			if dups <= 5 {
				t.Errorf("key %q written %d times (generated: %v), want once", k, n, want[k])
			}
		}
	}
	for k := range want {
		if got[k] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("key %q generated but never written", k)
			}
		}
	}
	if dups+missing > 0 {
		t.Fatalf("%d keys out of %d wrong, %d missing", dups, len(want), missing)
	}
}

var jobIDRE = regexp.MustCompile(`^\S+$`)

// TestStockFlowctlKnowsTheClusterTypes: the stock flowctl lists and
// validates example-dedup by asking the cluster, and its own --local
// registry does not have it.
func TestStockFlowctlKnowsTheClusterTypes(t *testing.T) {
	c := startCluster(t, 1)
	spec := c.writeSpec("check", 100, 10, 0, filepath.Join(c.dir, "out"))
	if out, errOut, err := flowctl(t, c.jm, "operators"); err != nil || !strings.Contains(out, "example-dedup") {
		t.Fatalf("operators: %v\n%s\n%s", err, out, errOut)
	}
	if out, errOut, err := flowctl(t, c.jm, "validate", spec); err != nil || out != "ok: 3 operators, 2 tasks after chaining" {
		t.Fatalf("validate on the cluster: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	if _, errOut, err := flowctl(t, c.jm, "validate", "--local", spec); err == nil || !strings.Contains(errOut, `unknown type "example-dedup"`) {
		t.Fatalf("validate --local: want the unknown type, got %v %q", err, errOut)
	}
}

// TestExactlyOnceUnderTaskManagerKill submits the dedup job with the stock
// flowctl, SIGKILLs the TaskManager running most of its subtasks after a
// checkpoint, and checks the committed output equals an uninterrupted
// run's: every key exactly once. The job must have restarted.
func TestExactlyOnceUnderTaskManagerKill(t *testing.T) {
	const records, keys, rate = 30000, 3000, 3000 // ~10s of input
	c := startCluster(t, 2)
	out := filepath.Join(c.dir, "out")
	spec := c.writeSpec("dedup-kill", records, keys, rate, out)
	id, errOut, err := flowctl(t, c.jm, "run", "-d", spec)
	if err != nil || !jobIDRE.MatchString(id) {
		t.Fatalf("flowctl run -d: %v\nstdout %q\nstderr %s", err, id, errOut)
	}
	waitFor(t, 30*time.Second, "the job running", func() bool { return c.allRunning(id) })
	// Two completed checkpoints: the second one saw records flowing.
	base := c.completed(id)
	waitFor(t, 20*time.Second, "two checkpoints", func() bool { return c.completed(id) >= base+2 })
	hosts := map[string]int{}
	for _, tv := range c.job(id).GetTasks() {
		for _, s := range tv.GetSubtasks() {
			hosts[s.GetTaskManagerId()]++
		}
	}
	victim, most := "", 0
	for tm, n := range hosts {
		if n > most {
			victim, most = tm, n
		}
	}
	t.Logf("SIGKILL %s (%d subtasks) after checkpoint %d", victim, most, c.completed(id))
	c.tms[victim].kill()
	delete(c.tms, victim)
	c.startTM()
	waitFor(t, 90*time.Second, "the job to finish", func() bool {
		s := c.status(id)
		if s == clusterv1.JobStatus_JOB_STATUS_FAILED || s == clusterv1.JobStatus_JOB_STATUS_CANCELED {
			t.Fatalf("job ended %s: %s", s, c.job(id).GetSummary().GetFailure())
		}
		return s == clusterv1.JobStatus_JOB_STATUS_FINISHED
	})
	if a := c.job(id).GetSummary().GetAttempt(); a < 2 {
		t.Fatalf("the job finished in attempt %d: the kill did not hit it", a)
	}
	checkOnce(t, out, records, keys)
}

// TestSavepointRescale stops the dedup job with a savepoint, has the stock
// flowctl check the savepoint against the job at another parallelism (on
// the JobManager, which knows example-dedup), restores it with the dedup
// at parallelism 3 and checks the output of both runs: every key exactly
// once, so the user type's state moved to the new key-group ranges.
func TestSavepointRescale(t *testing.T) {
	const records, keys, rate = 16000, 4000, 2500
	c := startCluster(t, 2)
	out := filepath.Join(c.dir, "out")
	spec := c.writeSpec("dedup-rescale", records, keys, rate, out)
	id, errOut, err := flowctl(t, c.jm, "run", "-d", spec)
	if err != nil {
		t.Fatalf("flowctl run -d: %v\n%s", err, errOut)
	}
	waitFor(t, 30*time.Second, "the job running", func() bool { return c.allRunning(id) })
	base := c.completed(id)
	waitFor(t, 20*time.Second, "two checkpoints", func() bool { return c.completed(id) >= base+2 })
	sp, errOut, err := flowctl(t, c.jm, "stop", id, "--savepoint-dir", filepath.Join(c.dir, "savepoints"))
	if err != nil || sp == "" {
		t.Fatalf("flowctl stop: %v\nstdout %q\nstderr %s", err, sp, errOut)
	}
	if s := c.status(id); s != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		t.Fatalf("stopped job is %s", s)
	}

	rescale := []string{"--set", "operators.unique.parallelism=3"}
	report, errOut, err := flowctl(t, c.jm, append([]string{"savepoint", "check", "-o", "json", spec, sp}, rescale...)...)
	if err != nil {
		t.Fatalf("savepoint check: %v\n%s\n%s", err, report, errOut)
	}
	var rep struct {
		Compatible bool `json:"compatible"`
		Findings   []struct {
			Code, UID, State string
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(report), &rep); err != nil {
		t.Fatalf("savepoint check -o json: %v\n%s", err, report)
	}
	has := func(code, uid, state string) bool {
		for _, f := range rep.Findings {
			if f.Code == code && f.UID == uid && (state == "" || f.State == state) {
				return true
			}
		}
		return false
	}
	if !rep.Compatible || !has("state-matched", "unique-v1", "seen") || !has("rescale", "unique-v1", "") {
		t.Fatalf("savepoint check: want compatible with unique-v1/seen matched and rescaled:\n%s", report)
	}
	if strings.Contains(errOut, "note:") {
		t.Errorf("savepoint check fell back to flowctl's registry: %s", errOut)
	}

	runOut, errOut, err := flowctl(t, c.jm, append([]string{"run", spec, "--from-savepoint", sp}, rescale...)...)
	if err != nil || !strings.Contains(runOut, "FINISHED") {
		t.Fatalf("run from the savepoint: %v\nstdout %s\nstderr %s", err, runOut, errOut)
	}
	checkOnce(t, out, records, keys)
}
