package cli

import (
	"regexp"
	"strings"
	"testing"
)

// candidates are the completion lines cobra's __complete prints before its
// ":<directive>" line, without their descriptions.
func candidates(t *testing.T, r result) (names []string, directive string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("__complete: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if strings.HasPrefix(line, ":") {
			directive = line
			continue
		}
		if line != "" {
			names = append(names, strings.SplitN(line, "\t", 2)[0])
		}
	}
	return names, directive
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCompletion(t *testing.T) {
	c := startCluster(t)
	env := map[string]string{EnvJobManager: c.JobManagerAddress()}

	// One finished and one running job.
	r := flowctl(t, env, "run", writeSpec(t, strings.Replace(boundedJob, "OUT", t.TempDir(), 1)))
	if r.code != 0 {
		t.Fatalf("run: exit %d: %s", r.code, r.stderr)
	}
	finished := regexp.MustCompile(`submitted job "bounded" as (\S+)`).FindStringSubmatch(r.stdout)
	if finished == nil {
		t.Fatalf("run printed no job id:\n%s", r.stdout)
	}
	r = flowctl(t, env, "run", "--detach", writeSpec(t, `name: forever
operators:
  - {id: gen, type: datagen, config: {rate: 100}}
  - {id: sink, type: blackhole, inputs: [gen]}
`))
	running := strings.TrimSpace(r.stdout)
	if r.code != 0 || running == "" {
		t.Fatalf("run --detach: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { flowctl(t, env, "cancel", running) })

	// describe offers every job, with its name and status as description.
	r = flowctl(t, env, "__complete", "describe", "")
	names, dir := candidates(t, r)
	if !contains(names, finished[1]) || !contains(names, running) || dir != ":4" {
		t.Errorf("describe completes %v (%s), want both jobs and no file completion (:4):\n%s", names, dir, r.stdout)
	}
	if !strings.Contains(r.stdout, running+"\tforever ") {
		t.Errorf("the running job's candidate lacks its name:\n%s", r.stdout)
	}
	// cancel and stop offer only jobs that can still be canceled or stopped.
	for _, cmd := range []string{"cancel", "stop"} {
		names, _ = candidates(t, flowctl(t, env, "__complete", cmd, ""))
		if !contains(names, running) || contains(names, finished[1]) {
			t.Errorf("%s completes %v, want only the running job %s", cmd, names, running)
		}
	}
	names, _ = candidates(t, flowctl(t, env, "__complete", "savepoint", "trigger", ""))
	if len(names) != 1 || names[0] != running {
		t.Errorf("savepoint trigger completes %v, want [%s]", names, running)
	}
	// A prefix narrows the candidates; a second argument gets none.
	names, _ = candidates(t, flowctl(t, env, "__complete", "describe", running[:len(running)-1]))
	if !contains(names, running) || contains(names, finished[1]) && !strings.HasPrefix(finished[1], running[:len(running)-1]) {
		t.Errorf("describe with a prefix completes %v", names)
	}
	if names, _ = candidates(t, flowctl(t, env, "__complete", "describe", running, "")); len(names) != 0 {
		t.Errorf("a second job id is completed: %v", names)
	}

	// Operator types come from the cluster.
	names, _ = candidates(t, flowctl(t, env, "__complete", "operators", "da"))
	if !contains(names, "datagen") || contains(names, "filter") {
		t.Errorf("operators da completes %v, want datagen and no filter", names)
	}
	// -o values.
	names, _ = candidates(t, flowctl(t, env, "__complete", "list", "-o", ""))
	if strings.Join(names, ",") != "table,json,yaml" {
		t.Errorf("-o completes %v", names)
	}
	// Spec arguments complete YAML files (cobra's file-extension filter, :8).
	names, dir = candidates(t, flowctl(t, env, "__complete", "run", ""))
	if strings.Join(names, ",") != "yaml,yml" || dir != ":8" {
		t.Errorf("run completes %v %s, want the yaml/yml extension filter", names, dir)
	}
}

// Without a JobManager, job ids complete to nothing (no error printed, no
// wait beyond the deadline) and operator types fall back to flowctl's own.
func TestCompletionWithoutCluster(t *testing.T) {
	r := flowctl(t, nil, "__complete", "describe", "")
	names, dir := candidates(t, r)
	if len(names) != 0 || dir != ":5" { // error | no file completion
		t.Errorf("describe without a cluster completes %v %s", names, dir)
	}
	names, _ = candidates(t, flowctl(t, nil, "__complete", "operators", "fil"))
	if !contains(names, "filter") || !contains(names, "file") {
		t.Errorf("operators fil without a cluster completes %v", names)
	}
	// The completion script itself is cobra's.
	r = flowctl(t, nil, "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "__flowctl_") {
		t.Errorf("completion bash: exit %d\n%.200s", r.code, r.stdout)
	}
}
