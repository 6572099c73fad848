package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
)

// syncBuffer is a bytes.Buffer safe to read while the CLI writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const unboundedJob = `name: endless
operators:
  - {id: gen, type: datagen, config: {rate: 500}}
  - {id: sink, type: blackhole, inputs: [gen]}
`

// interrupted runs flowctl until it prints RUNNING, then cancels its context
// (as Ctrl-C does) and returns the exit code and output.
func interrupted(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, args, Env{Registry: api.Default, Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }})
	}()
	waitFor(t, func() bool { return strings.Contains(out.String(), "RUNNING") }, "RUNNING in the output of flowctl "+strings.Join(args, " "))
	cancel()
	select {
	case code := <-done:
		return code, out.String(), errOut.String()
	case <-time.After(20 * time.Second):
		t.Fatalf("flowctl %v did not return after the interrupt", args)
	}
	return 0, "", ""
}

func TestInterruptRunLeavesJobRunning(t *testing.T) {
	c := startCluster(t)
	env := map[string]string{EnvJobManager: c.JobManagerAddress()}
	code, out, errOut := interrupted(t, env, "run", writeSpec(t, unboundedJob))
	m := regexp.MustCompile(`submitted job "endless" as (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no job id in output:\n%s", out)
	}
	id := m[1]
	if code != ExitError || !strings.Contains(errOut, "interrupted: job "+id+" keeps running") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	r := flowctl(t, env, "list")
	if !regexp.MustCompile(`(?m)^` + id + `\s+endless\s+RUNNING`).MatchString(r.stdout) {
		t.Fatalf("job is not running after the interrupt:\n%s", r.stdout)
	}
	if r := flowctl(t, env, "cancel", id, "--wait"); r.code != 0 {
		t.Fatalf("cancel: %d %s", r.code, r.stderr)
	}
}

func TestInterruptLocalCancelsJob(t *testing.T) {
	code, out, errOut := interrupted(t, nil, "local", writeSpec(t, unboundedJob), "--task-managers", "1", "--slots", "1")
	if code != ExitCanceled || !regexp.MustCompile(`^interrupted: job \S+ canceled\n$`).MatchString(errOut) {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
