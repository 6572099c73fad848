package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// binDir holds the jobmanager, taskmanager and flowctl binaries built once
// for the package's tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flow-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "github.com/flowrt/flow/cmd/...")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	// The tests' own goroutines (log readers, gRPC clients) must end too.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// proc is a daemon started from a built binary.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
	// addrs receives "rpc_address"/"http_address" from the listening line.
	rpc, http chan string
	exited    chan struct{}
	// rpcAddr and httpAddr keep what addresses returned.
	rpcAddr, httpAddr string
}

var listenRE = regexp.MustCompile(`msg=listening rpc_address=(\S+)(?: http_address=(\S+))?`)

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, rpc: make(chan string, 1), http: make(chan string, 1), exited: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, strings.Fields(name)[0]), args...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				p.rpc <- m[1]
				p.http <- m[2]
			}
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("---- %s log ----\n%s", name, p.logs())
		}
	})
	return p
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) addresses() (rpc, http string) {
	p.t.Helper()
	if p.rpcAddr != "" {
		return p.rpcAddr, p.httpAddr
	}
	select {
	case rpc = <-p.rpc:
		p.rpcAddr, p.httpAddr = rpc, <-p.http
		return p.rpcAddr, p.httpAddr
	case <-p.exited:
		p.t.Fatalf("%s exited before listening:\n%s", p.name, p.logs())
	case <-time.After(20 * time.Second):
		p.t.Fatalf("%s did not log its addresses:\n%s", p.name, p.logs())
	}
	return "", ""
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("%s did not exit after %v", p.name, sig)
	}
}

func flowctl(t *testing.T, jm string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "flowctl"), append([]string{"--jobmanager", jm}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func client(t *testing.T, addr string) clusterv1.JobManagerServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clusterv1.NewJobManagerServiceClient(conn)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func taskManagers(t *testing.T, c clusterv1.JobManagerServiceClient) map[string]clusterv1.TaskManagerState {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.ListTaskManagers(ctx, &clusterv1.ListTaskManagersRequest{})
	if err != nil {
		return nil
	}
	out := map[string]clusterv1.TaskManagerState{}
	for _, tm := range resp.GetTaskManagers() {
		out[tm.GetId()] = tm.GetState()
	}
	return out
}

const active = clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE

// TestClusterLifecycle runs a real jobmanager and two real taskmanagers:
// a job submitted with flowctl runs across both and finishes with every
// record delivered once and every key in one subtask; a SIGKILLed
// TaskManager is marked lost within the heartbeat timeout; a restarted
// JobManager still lists the finished job and the surviving TaskManager
// registers with it again.
func TestClusterLifecycle(t *testing.T) {
	dir := t.TempDir()
	const hbTimeout = 2 * time.Second
	jmArgs := func(rpc string) []string {
		return []string{"--rpc-address", rpc, "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "jm"),
			"--heartbeat-timeout", hbTimeout.String(), "--log-format", "text"}
	}
	jm := start(t, "jobmanager", jmArgs("127.0.0.1:0")...)
	jmAddr, jmHTTP := jm.addresses()
	var tms []*proc
	for i := 0; i < 2; i++ {
		tms = append(tms, start(t, fmt.Sprintf("taskmanager %d", i), "--jobmanager", jmAddr, "--slots", "2",
			"--id", fmt.Sprintf("tm-%d", i), "--rpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
			"--data-dir", filepath.Join(dir, fmt.Sprintf("tm%d", i))))
	}
	c := client(t, jmAddr)
	waitFor(t, 20*time.Second, "two active TaskManagers", func() bool {
		tm := taskManagers(t, c)
		return tm["tm-0"] == active && tm["tm-1"] == active
	})

	// A keyed job across both TaskManagers: datagen(2) -> keyBy -> map(3) -> file.
	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "job.yaml")
	const records, keys = 30000, 50
	writeFile(t, spec, fmt.Sprintf(`name: e2e-keyed
parallelism: 2
operators:
  - id: src
    type: datagen
    config: {count: %d, keys: %d, seed: 7}
  - id: pass
    type: map
    inputs: [src]
    keyBy: key
    parallelism: 3
    config: {expression: "{\"key\": key, \"seq\": seq}"}
  - id: sink
    type: file
    inputs: [pass]
    parallelism: 3
    config: {path: %q}
`, records, keys, out))
	runOut, err := flowctl(t, jmAddr, "run", spec)
	if err != nil {
		t.Fatalf("flowctl run: %v\n%s", err, runOut)
	}
	if !strings.Contains(runOut, "FINISHED") {
		t.Fatalf("flowctl run did not report FINISHED:\n%s", runOut)
	}
	checkKeyedOutput(t, out, records)

	// Metrics and health on the JobManager's HTTP address.
	metrics := httpGet(t, "http://"+jmHTTP+"/metrics")
	if !strings.Contains(metrics, `flow_jobmanager_jobs{status="FINISHED"} 1`) {
		t.Fatalf("/metrics lacks the finished job:\n%s", grepLines(metrics, "flow_jobmanager"))
	}
	if got := httpGet(t, "http://"+jmHTTP+"/healthz"); strings.TrimSpace(got) != "ok" {
		t.Fatalf("/healthz = %q", got)
	}
	listOut, err := flowctl(t, jmAddr, "list")
	if err != nil || !strings.Contains(listOut, "e2e-keyed") {
		t.Fatalf("flowctl list: %v\n%s", err, listOut)
	}

	// SIGKILL one TaskManager: lost within the heartbeat timeout.
	killed := time.Now()
	tms[1].signal(syscall.SIGKILL)
	waitFor(t, 3*hbTimeout, "tm-1 marked lost", func() bool {
		return taskManagers(t, c)["tm-1"] == clusterv1.TaskManagerState_TASK_MANAGER_STATE_LOST
	})
	// The timer runs from the last heartbeat, which precedes the kill, so
	// the JobManager must notice within the timeout (plus polling slack).
	if took := time.Since(killed); took > hbTimeout+time.Second {
		t.Fatalf("tm-1 marked lost %s after SIGKILL; heartbeat timeout is %s", took, hbTimeout)
	}

	// Restart the JobManager on the same address and data dir.
	jm.signal(syscall.SIGTERM)
	jm2 := start(t, "jobmanager", jmArgs(jmAddr)...)
	if got, _ := jm2.addresses(); got != jmAddr {
		t.Fatalf("restarted JobManager listens on %s, want %s", got, jmAddr)
	}
	c2 := client(t, jmAddr)
	waitFor(t, 20*time.Second, "tm-0 to register with the restarted JobManager", func() bool {
		return taskManagers(t, c2)["tm-0"] == active
	})
	jobsOut, err := flowctl(t, jmAddr, "list", "-o", "json")
	if err != nil {
		t.Fatalf("flowctl list after restart: %v\n%s", err, jobsOut)
	}
	if !strings.Contains(jobsOut, "e2e-keyed") || !strings.Contains(jobsOut, "FINISHED") {
		t.Fatalf("restarted JobManager does not list the finished job:\n%s", jobsOut)
	}
}

// checkKeyedOutput reads every part file under dir: each generated seq must
// appear exactly once, and each key in exactly one subtask's files.
func checkKeyedOutput(t *testing.T, dir string, records int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "part-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no part files in %s (err %v)", dir, err)
	}
	seen := make([]int, records)
	keyFile := map[string]string{}
	partRE := regexp.MustCompile(`-(\d+)-\d+\.jsonl$`) // part-<job>-<operator>-<run>-<subtask>-<n>.jsonl
	for _, f := range files {
		m := partRE.FindStringSubmatch(filepath.Base(f))
		if m == nil {
			t.Fatalf("unexpected file name %s", f)
		}
		sub := m[1]
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var rec struct {
				Key string `json:"key"`
				Seq int    `json:"seq"`
			}
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("%s: bad line %q: %v", f, sc.Text(), err)
			}
			if rec.Seq < 0 || rec.Seq >= records {
				t.Fatalf("%s: seq %d out of range", f, rec.Seq)
			}
			seen[rec.Seq]++
			if prev, ok := keyFile[rec.Key]; ok && prev != sub {
				t.Fatalf("key %s appears in subtasks %s and %s", rec.Key, prev, sub)
			}
			keyFile[rec.Key] = sub
		}
		fh.Close()
	}
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("seq %d delivered %d times, want exactly once", seq, n)
		}
	}
	if len(keyFile) < 2 {
		t.Fatalf("only %d distinct keys in the output", len(keyFile))
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricsClient scrapes /metrics without keeping connections open.
var metricsClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 3 * time.Second}

// recordsIn sums flow_task_records_in_total of one task of a job (for a
// source: the records it generated) over the /metrics of the given
// daemons; one that does not answer (killed) counts nothing.
func recordsIn(procs []*proc, job, task string) float64 {
	var sum float64
	for _, p := range procs {
		resp, err := metricsClient.Get("http://" + p.httpAddr + "/metrics")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			l := sc.Text()
			if !strings.HasPrefix(l, "flow_task_records_in_total{") ||
				!strings.Contains(l, `job="`+job+`"`) || !strings.Contains(l, `task="`+task+`"`) {
				continue
			}
			if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
				sum += v
			}
		}
		resp.Body.Close()
	}
	return sum
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
