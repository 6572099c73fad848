package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/jobgraph"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// stateJobOptions configure startStateJob.
type stateJobOptions struct {
	clock api.Clock
	// assign maps a subtask to a manager index; default subtask % managers.
	assign func(task string, subtask int) int
}

// stateJob is a running job whose subtasks' data dirs are known.
type stateJob struct {
	*job
	dataDirs map[string]string // "task/subtask" -> TaskEnv.DataDir
}

// startStateJob is startJob with an injected clock and recorded data dirs.
func startStateJob(t testing.TB, c *cluster, reg *api.Registry, g *jobgraphv1.JobGraph, o stateJobOptions) *stateJob {
	t.Helper()
	plan, err := jobgraph.BuildPlan(g)
	if err != nil {
		t.Fatal(err)
	}
	assign := o.assign
	if assign == nil {
		assign = func(_ string, s int) int { return s % len(c.managers) }
	}
	ds := jobgraph.BuildDeployments("job-1", 0, g, plan, func(task string, s int) string { return c.addrs[assign(task, s)] })
	ctx, cancel := context.WithCancel(context.Background())
	j := &stateJob{job: &job{deployments: ds, errs: map[string]error{}, cancel: cancel}, dataDirs: map[string]string{}}
	for _, d := range ds {
		name := fmt.Sprintf("%s/%d", d.GetId().GetTask(), d.GetId().GetSubtask())
		env := TaskEnv{
			Registry: reg, Exchange: c.managers[assign(d.GetId().GetTask(), int(d.GetId().GetSubtask()))],
			DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), Clock: o.clock, FlushInterval: 5 * time.Millisecond,
		}
		j.dataDirs[name] = env.DataDir
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			err := RunTask(ctx, d, env)
			j.mu.Lock()
			j.errs[name] = err
			j.mu.Unlock()
			if err != nil {
				cancel()
			}
		}()
	}
	t.Cleanup(func() { cancel(); j.wg.Wait() })
	return j
}

// run waits for the job and fails the test on any subtask error.
func (j *stateJob) run(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := firstError(j.wait(t, timeout)); err != nil {
		t.Fatalf("job failed: %v", err)
	}
}

// readLines reads every committed part file of the file sink under dir as
// JSON objects, by subtask.
func readLines(t *testing.T, dir string) map[int][]map[string]any {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]map[string]any{}
	for _, e := range ents {
		var sub, n int
		if _, err := fmtSscanf(e.Name(), &sub, &n); err != nil {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m map[string]any
			d := json.NewDecoder(strings.NewReader(sc.Text()))
			d.UseNumber()
			if err := d.Decode(&m); err != nil {
				t.Fatalf("%s: %q: %v", e.Name(), sc.Text(), err)
			}
			out[sub] = append(out[sub], m)
		}
		f.Close()
	}
	return out
}

// sortedLines returns every output line of dir, sorted.
func sortedLines(t *testing.T, dir string) []string {
	t.Helper()
	var lines []string
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		var sub, n int
		if _, err := fmtSscanf(e.Name(), &sub, &n); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	sort.Strings(lines)
	return lines
}

func num(t *testing.T, m map[string]any, field string) int64 {
	t.Helper()
	n, ok := m[field].(json.Number)
	if !ok {
		t.Fatalf("record %v: field %q is not a number", m, field)
	}
	v, err := n.Int64()
	if err != nil {
		t.Fatalf("record %v: field %q: %v", m, field, err)
	}
	return v
}

// fakeClock is a processing-time clock the test moves; tasks read it from
// their own goroutines.
type fakeClock struct{ ms atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// counter is shared between a test and the operators it registers.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(k string) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
	c.mu.Unlock()
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}
