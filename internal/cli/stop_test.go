package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
)

const savepointJob = `name: counting
parallelism: 2
operators:
  - {id: gen, type: datagen, parallelism: 1, config: {rate: 2000, keys: 20}}
  - {id: count, type: count, uid: count-v1, inputs: [gen], keyBy: key}
  - {id: sink, type: blackhole, inputs: [count]}
`

// Savepoints against a mini cluster: trigger one of a running job, inspect
// and check it offline, then stop the job with a savepoint and check that
// the job the savepoint came from fits it.
func TestSavepointTriggerAndStop(t *testing.T) {
	c := startCluster(t)
	env := map[string]string{EnvJobManager: c.JobManagerAddress()}
	spec := writeSpec(t, savepointJob)
	r := flowctl(t, env, "run", spec, "--detach")
	id := strings.TrimSuffix(r.stdout, "\n")
	if r.code != 0 {
		t.Fatalf("run: exit %d: %s", r.code, r.stderr)
	}
	waitFor(t, func() bool {
		return regexp.MustCompile(`(?m)^` + id + `\s+counting\s+RUNNING`).MatchString(flowctl(t, env, "list").stdout)
	}, "job RUNNING")

	dir := t.TempDir()
	// RUNNING comes before the first record reaches count: take savepoints
	// until one holds counted keys (each is a real, complete savepoint).
	var path string
	var rep *savepoint.Report
	var counted *savepoint.StateReport
	waitFor(t, func() bool {
		r = flowctl(t, env, "savepoint", "trigger", id, "--dir", dir)
		if r.code != 0 {
			t.Fatalf("trigger: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		t.Logf("trigger stderr:\n%s", r.stderr)
		path = strings.TrimSuffix(r.stdout, "\n")
		if !strings.HasPrefix(path, "file://"+dir+"/savepoint-") || strings.Contains(path, "\n") {
			t.Fatalf("trigger printed %q, want one savepoint path under %s", r.stdout, dir)
		}
		if !regexp.MustCompile(`(?m)^checkpoint \d+: \d+/\d+ subtasks acknowledged`).MatchString(r.stderr) ||
			!regexp.MustCompile(`(?m)^checkpoint \d+: (\d+)/(\d+) subtasks acknowledged \(savepoint complete\)$`).MatchString(r.stderr) {
			t.Errorf("progress on stderr:\n%s", r.stderr)
		}
		var err error
		rep, err = savepoint.Inspect(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		counted = nil
		for i := range rep.Operators {
			if rep.Operators[i].UID == "count-v1" {
				counted = rep.Operators[i].State("count")
			}
		}
		return counted != nil && counted.Entries > 0
	}, "a savepoint with counted keys")
	if !rep.Savepoint || counted == nil || counted.Entries == 0 || counted.Entries > 20 {
		t.Fatalf("savepoint report: %+v, count state %+v", rep, counted)
	}
	r = flowctl(t, env, "savepoint", "check", spec, path)
	if r.code != 0 {
		t.Fatalf("check against the job's own savepoint: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// The job is still running; stop it with a savepoint, as JSON.
	r = flowctl(t, env, "stop", id, "--savepoint-dir", dir, "-o", "json")
	if r.code != 0 {
		t.Fatalf("stop: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	var last struct {
		Done bool   `json:"done"`
		Path string `json:"path"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &last); err != nil || !last.Done || !strings.HasPrefix(last.Path, "file://"+dir+"/savepoint-") || last.Path == path {
		t.Fatalf("stop -o json: %v\n%s", err, r.stdout)
	}
	if !strings.Contains(r.stderr, "job "+id+" stopped (FINISHED)") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if got := flowctl(t, env, "describe", id).stdout; !strings.Contains(got, "FINISHED") {
		t.Errorf("describe after stop:\n%s", got)
	}

	// A finished job takes no savepoint; an unknown one is not found.
	r = flowctl(t, env, "savepoint", "trigger", id, "--dir", dir)
	if r.code == 0 || r.stdout != "" {
		t.Errorf("trigger of a finished job: exit %d, %q", r.code, r.stdout)
	}
	r = flowctl(t, env, "savepoint", "trigger", "nope", "--dir", dir)
	if want := "job \"nope\" not found: list jobs with 'flowctl list'\n"; r.code != ExitError || r.stderr != want {
		t.Errorf("unknown job: exit %d, stderr %q", r.code, r.stderr)
	}
}
