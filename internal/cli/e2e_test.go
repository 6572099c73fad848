package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/minicluster"
	"github.com/flowrt/flow/pkg/api"
)

func startCluster(t *testing.T) *minicluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 2, Slots: 2, DataDir: t.TempDir(), Registry: api.Default})
	if err != nil {
		t.Fatalf("start mini cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close mini cluster: %v", err)
		}
	})
	return c
}

func countLines(t *testing.T, dir string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*.jsonl"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(b), "\n")
	}
	return n
}

const boundedJob = `name: bounded
parallelism: 2
operators:
  - id: gen
    type: datagen
    config: {count: 3000}
  - id: out
    type: file
    inputs: [gen]
    config: {path: OUT}
`

func TestLocal(t *testing.T) {
	out := t.TempDir()
	spec := writeSpec(t, strings.Replace(boundedJob, "OUT", out, 1))
	r := flowctl(t, nil, "local", spec, "--task-managers", "1", "--slots", "2", "--set", "operators.gen.config.count=1000")
	if r.code != 0 {
		t.Fatalf("local: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^submitted job "bounded" as \S+$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3}  FINISHED`).MatchString(r.stdout) {
		t.Errorf("local output:\n%s", r.stdout)
	}
	if n := countLines(t, out); n != 1000 {
		t.Errorf("the job wrote %d records, want 1000 (the --set count)", n)
	}
}

func TestAgainstCluster(t *testing.T) {
	c := startCluster(t)
	jm := c.JobManagerAddress()
	env := map[string]string{EnvJobManager: jm}

	// An attached run of a bounded job finishes with exit 0.
	out := t.TempDir()
	r := flowctl(t, env, "run", writeSpec(t, strings.Replace(boundedJob, "OUT", out, 1)))
	if r.code != 0 || !strings.Contains(r.stdout, "FINISHED") {
		t.Fatalf("run: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if n := countLines(t, out); n != 3000 {
		t.Errorf("the job wrote %d records, want 3000", n)
	}

	// A detached unbounded job keeps running until canceled.
	unbounded := writeSpec(t, `name: forever
operators:
  - {id: gen, type: datagen, config: {rate: 1000}}
  - {id: f, type: filter, inputs: [gen], parallelism: 2, config: {condition: "value >= 0"}}
  - {id: sink, type: blackhole, inputs: [f]}
`)
	r = flowctl(t, env, "run", unbounded, "--detach")
	id := strings.TrimSuffix(r.stdout, "\n")
	if r.code != 0 || !regexp.MustCompile(`^[0-9a-z-]+$`).MatchString(id) {
		t.Fatalf("run --detach: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}

	waitFor(t, func() bool {
		r := flowctl(t, env, "list")
		return regexp.MustCompile(`(?m)^` + id + `\s+forever\s+RUNNING`).MatchString(r.stdout)
	}, "job "+id+" RUNNING in flowctl list")

	r = flowctl(t, env, "list", "-o", "json")
	var listed struct {
		Jobs []struct {
			JobID  string `json:"job_id"`
			Status string `json:"status"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed.Jobs) != 2 {
		t.Fatalf("list -o json: %v\n%s", err, r.stdout)
	}

	r = flowctl(t, env, "describe", id)
	if r.code != 0 {
		t.Fatalf("describe: exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"Name:", "forever", "RUNNING", "gen", "sink", "tm-0", "tm-1", "History:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("describe output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = flowctl(t, env, "describe", id, "-o", "json")
	var described map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &described); err != nil || described["job"] == nil {
		t.Errorf("describe -o json: %v\n%s", err, r.stdout)
	}

	r = flowctl(t, env, "taskmanagers")
	if r.code != 0 || strings.Count(r.stdout, "ACTIVE") != 2 {
		t.Errorf("taskmanagers: exit %d\n%s", r.code, r.stdout)
	}

	// Follow the running job in the background; canceling it ends the
	// attached watch with exit 4.
	watched := make(chan result, 1)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		var res result
		var bout, berr strings.Builder
		g := &globals{env: &Env{Registry: api.Default, Stdout: &bout, Stderr: &berr, Now: time.Now}, timeout: DefaultTimeout}
		cl, err := dialAddr(g, jm)
		if err != nil {
			res.code = -1
			watched <- res
			return
		}
		defer cl.Close()
		err = cl.follow(ctx, id, false)
		res.code = exitCode(err)
		res.stdout, res.stderr = bout.String(), berr.String()
		watched <- res
	}()

	r = flowctl(t, env, "cancel", id, "--wait")
	if r.code != 0 || r.stdout != "job "+id+" canceled\n" {
		t.Fatalf("cancel --wait: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	select {
	case res := <-watched:
		if res.code != ExitCanceled || !strings.Contains(res.stdout, "CANCELED") {
			t.Errorf("follow of a canceled job: exit %d\n%s", res.code, res.stdout)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("follow did not return after the job was canceled")
	}

	r = flowctl(t, env, "cancel", id)
	if r.code != ExitError || !strings.Contains(r.stderr, "CANCELED") && !strings.Contains(r.stderr, "canceled") {
		t.Errorf("second cancel: exit %d, stderr %q", r.code, r.stderr)
	}

	// Unknown job ids.
	for _, args := range [][]string{{"describe", "nope"}, {"cancel", "nope"}} {
		r = flowctl(t, env, args...)
		want := "job \"nope\" not found: list jobs with 'flowctl list'\n"
		if r.code != ExitError || r.stderr != want {
			t.Errorf("flowctl %v: exit %d, stderr %q; want %q", args, r.code, r.stderr, want)
		}
	}
}

func TestRunFailedJob(t *testing.T) {
	c := startCluster(t)
	// int() of a non-numeric string fails at run time.
	spec := writeSpec(t, `name: doomed
operators:
  - {id: gen, type: datagen, config: {count: 10}}
  - {id: m, type: map, inputs: [gen], config: {expression: "int(key) + 1"}}
  - {id: sink, type: blackhole, inputs: [m]}
`)
	r := flowctl(t, map[string]string{EnvJobManager: c.JobManagerAddress()}, "run", spec)
	if r.code != ExitFailed || !strings.Contains(r.stderr, "failed") || !strings.Contains(r.stderr, "int(key)") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("run of a failing job: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exitError); ok {
		return ee.code
	}
	return ExitError
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
