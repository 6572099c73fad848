package bench

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a daemon process: this test binary re-executed with daemonEnv
// set, running the stock daemon command with the package registry.
type proc struct {
	name      string
	cmd       *exec.Cmd
	mu        sync.Mutex
	log       strings.Builder
	rpc, http chan string
	exited    chan struct{}
}

var listenRE = regexp.MustCompile(`msg=listening rpc_address=(\S+)(?: http_address=(\S+))?`)

// startDaemon starts daemon ("jobmanager" or "taskmanager") with args; the
// process is killed at the end of the benchmark if still running.
func startDaemon(b testing.TB, daemon, name string, args ...string) *proc {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	p := &proc{name: name, rpc: make(chan string, 1), http: make(chan string, 1), exited: make(chan struct{})}
	p.cmd = exec.Command(exe, append(args, "--log-format", "text")...)
	p.cmd.Env = append(os.Environ(), daemonEnv+"="+daemon)
	p.cmd.Stdout = io.Discard
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
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
		_, _ = io.Copy(io.Discard, stderr)
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	b.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if b.Failed() {
			b.Logf("---- %s log (tail) ----\n%s", name, tail(p.logs(), 40))
		}
	})
	return p
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (p *proc) addresses(b testing.TB) (rpc, http string) {
	b.Helper()
	select {
	case rpc = <-p.rpc:
		return rpc, <-p.http
	case <-p.exited:
		b.Fatalf("%s exited before listening:\n%s", p.name, tail(p.logs(), 40))
	case <-time.After(30 * time.Second):
		b.Fatalf("%s did not log its addresses:\n%s", p.name, tail(p.logs(), 40))
	}
	return "", ""
}

// kill sends SIGKILL and waits for the process to exit.
func (p *proc) kill(b testing.TB) {
	b.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		b.Fatalf("kill %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		b.Fatalf("%s did not exit after SIGKILL", p.name)
	}
}

var metricsClient = &http.Client{Timeout: 2 * time.Second}

// recordsOut sums flow_task_records_out_total{task="<task>"} on a
// TaskManager's /metrics; ok is false when the endpoint does not answer.
func recordsOut(httpAddr, task string) (n float64, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return 0, false
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	label := `task="` + task + `"`
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "flow_task_records_out_total{") || !strings.Contains(l, label) {
			continue
		}
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
				n += v
			}
		}
	}
	return n, sc.Err() == nil
}
