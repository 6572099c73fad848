package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type result struct {
	code           int
	stdout, stderr string
}

// flowctl runs the CLI in-process with the given environment variables.
func flowctl(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return flowctlCtx(t, context.Background(), env, args...)
}

func flowctlCtx(t *testing.T, ctx context.Context, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	// Without FLOW_JOBMANAGER, a closed port: the default localhost:6123
	// may be a JobManager someone else runs on this machine.
	noJM := closedPort(t)
	code := Main(ctx, args, Env{
		Registry: api.Default,
		Stdout:   &out, Stderr: &errOut,
		Getenv: func(k string) string {
			if v, ok := env[k]; ok || k != EnvJobManager {
				return v
			}
			return noJM
		},
	})
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachableJobManager(t *testing.T) {
	addr := closedPort(t)
	want := "cannot reach the JobManager at " + addr + " (connection refused): start one, or point flowctl at it with --jobmanager HOST:PORT or FLOW_JOBMANAGER\n"
	for _, args := range [][]string{
		{"list", "--jobmanager", addr},
		{"taskmanagers", "--jobmanager", addr},
		{"describe", "abc", "--jobmanager", addr},
		{"cancel", "abc", "--jobmanager", addr},
		{"run", "../../examples/hello.yaml", "--jobmanager", addr},
	} {
		start := time.Now()
		r := flowctl(t, nil, args...)
		if r.code != ExitError || r.stderr != want {
			t.Errorf("flowctl %v: exit %d, stderr %q; want exit %d and %q", args, r.code, r.stderr, ExitError, want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("flowctl %v took %v to notice the JobManager is down", args, d)
		}
	}
	// The environment variable names the JobManager too.
	r := flowctl(t, map[string]string{EnvJobManager: addr}, "list")
	if r.code != ExitError || r.stderr != want {
		t.Errorf("FLOW_JOBMANAGER: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"list", "-o", "xml"}, `-o "xml" is not an output format: use table, json or yaml: see 'flowctl list --help'`},
		{[]string{"list", "--timeout", "0s"}, `--timeout 0s must be positive: see 'flowctl list --help'`},
		{[]string{"list", "--timeout", "soon"}, `invalid argument "soon" for "--timeout" flag`},
		{[]string{"run"}, `want one job spec file, got 0 argument(s): see 'flowctl run --help'`},
		{[]string{"describe"}, `want one job id, got 0 argument(s): see 'flowctl describe --help'`},
		{[]string{"list", "--bogus"}, `unknown flag: --bogus: see 'flowctl list --help'`},
		{[]string{"local", "x.yaml", "--slots", "0"}, `--slots 0: use at least 1: see 'flowctl local --help'`},
		{[]string{"local", "../../examples/hello.yaml", "--slots", "1", "--task-managers", "1"}, `the job needs 2 slots (its largest parallelism) but --task-managers 1 x --slots 1 gives 1`},
		{[]string{"operators", "nope", "--local"}, `unknown operator type "nope" (known types: `},
		{[]string{"validate", "does-not-exist.yaml"}, `read job spec: open does-not-exist.yaml: no such file or directory`},
		{[]string{"bogus"}, `unknown command "bogus" for "flowctl": see 'flowctl --help'`},
		{[]string{"lst", "--jobmanager", "x:1"}, `unknown command "lst" for "flowctl" (did you mean "list"?): see 'flowctl --help'`},
	}
	for _, tc := range tests {
		r := flowctl(t, nil, tc.args...)
		if r.code != ExitUsage {
			t.Errorf("flowctl %v: exit %d, want %d (stderr %q)", tc.args, r.code, ExitUsage, r.stderr)
		}
		if !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("flowctl %v: stderr %q, want one line containing %q", tc.args, r.stderr, tc.want)
		}
		if strings.Contains(r.stderr, "Usage:") || strings.Contains(r.stdout, "Usage:") {
			t.Errorf("flowctl %v printed the usage", tc.args)
		}
	}
}

func writeSpec(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidate(t *testing.T) {
	r := flowctl(t, nil, "validate", "../../examples/hello.yaml", "--local")
	if r.code != 0 || r.stdout != "ok: 4 operators, 1 tasks after chaining\n" {
		t.Fatalf("validate hello: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// --set changes the plan: a different parallelism breaks the chain.
	r = flowctl(t, nil, "validate", "../../examples/hello.yaml", "--local", "--set", "operators.out.parallelism=1")
	if r.code != 0 || r.stdout != "ok: 4 operators, 2 tasks after chaining\n" {
		t.Fatalf("validate with --set: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	path := writeSpec(t, `name: bad
operators:
  - id: gen
    type: datagen
    config: {count: many}
  - id: out
    type: cuonter
    inputs: [gen]
`)
	r = flowctl(t, nil, "validate", path, "--local", "--set", "operators.gen.parallelism=0")
	want := []string{
		path + `: --set operators.gen.parallelism=0: operator "gen": parallelism 0 is out of range: use at least 1`,
		path + `:5:21: operator "gen": config field "count": wrong type: want an integer, got string "many"`,
		path + `:7:11: operator "out": unknown type "cuonter" (known types: ` + strings.Join(api.Default.Names(), ", ") + `)`,
	}
	if r.code != ExitUsage || r.stderr != strings.Join(want, "\n")+"\n" || r.stdout != "" {
		t.Fatalf("validate bad spec: exit %d\nstdout %q\nstderr:\n%s\nwant:\n%s", r.code, r.stdout, r.stderr, strings.Join(want, "\n"))
	}

	r = flowctl(t, nil, "validate", writeSpec(t, "name: x\noperators: [\n"), "--local")
	if r.code != ExitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "malformed YAML") {
		t.Fatalf("malformed YAML: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestExamples validates every committed example against the stock registry.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) < 2 {
		t.Fatalf("found %d examples", len(files))
	}
	_, countMissing := api.Default.Lookup("count")
	for _, f := range files {
		r := flowctl(t, nil, "validate", f)
		if filepath.Base(f) == "keyed-count.yaml" && countMissing != nil {
			// The count operator is not registered yet: that must be the only problem.
			if r.code != ExitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, `unknown type "count"`) {
				t.Errorf("%s: exit %d, stderr %q; want only the unknown count type", f, r.code, r.stderr)
			}
			continue
		}
		if r.code != 0 {
			t.Errorf("%s: exit %d:\n%s", f, r.code, r.stderr)
		}
	}
}

func TestOperators(t *testing.T) {
	r := flowctl(t, nil, "operators")
	if r.code != 0 || !regexp.MustCompile(`(?m)^datagen +source `).MatchString(r.stdout) {
		t.Fatalf("operators: exit %d, stdout:\n%s", r.code, r.stdout)
	}
	r = flowctl(t, nil, "operators", "datagen", "-o", "json")
	var ti typeInfo
	if err := json.Unmarshal([]byte(r.stdout), &ti); err != nil || ti.Name != "datagen" || ti.Kind != "source" || len(ti.Fields) == 0 {
		t.Fatalf("operators datagen -o json: %v, %+v", err, ti)
	}
	r = flowctl(t, nil, "operators", "-o", "json")
	var all []typeInfo
	if err := json.Unmarshal([]byte(r.stdout), &all); err != nil || len(all) != len(api.Default.Types()) {
		t.Fatalf("operators -o json: %v, %d types", err, len(all))
	}
	r = flowctl(t, nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "flowctl ") {
		t.Fatalf("version: %d %q", r.code, r.stdout)
	}
}

func TestRunRestoreFlagsUsage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(path, []byte("name: x\noperators:\n  - id: gen\n    type: datagen\n  - id: out\n    type: blackhole\n    inputs: [gen]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := flowctl(t, nil, "run", path, "--from-savepoint", "/a", "--from-checkpoint", "/b")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "not both") {
		t.Fatalf("both restore flags: exit %d, %q", r.code, r.stderr)
	}
	r = flowctl(t, nil, "run", path, "--allow-non-restored-state")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "goes with --from-savepoint") {
		t.Fatalf("--allow-non-restored-state alone: exit %d, %q", r.code, r.stderr)
	}
}
