package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fixture is the frozen v1 savepoint of pkg/checkpoint/savepoint: operators
// gen (datagen, a source position), profile-uid (a test-only type with
// value, list, map, timer and operator state), count (count) and out
// (blackhole); parallelism 2, max parallelism 8; 8 users.
const fixture = "../../pkg/checkpoint/savepoint/testdata/v1"

// copyFixture copies the fixture to a temporary directory (a savepoint is
// relocatable) and returns its path.
func copyFixture(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "sp")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(fixture)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(fixture, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestSavepointInspect(t *testing.T) {
	r := flowctl(t, nil, "savepoint", "inspect", fixture)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	abs, _ := filepath.Abs(fixture)
	for _, want := range []string{
		"savepoint file://" + abs + " (format v1)",
		"job profiles (0123456789abcdef), checkpoint 7",
		"4 operators, 6 states, 74 entries, 6 files",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, re := range []string{
		`(?m)^profile-uid\s+profile\s+2\s+8\s+0,2-3,5\s+0\s+`,
		`(?m)^gen\s+datagen\s+1\s+8\s+-\s+1\s+`,
		`(?m)^profile-uid\s+recent\s+list\s+json:visit \(values v1\)\s+1h0m0s\s+8\s+8\s+\d+\s+4$`,
		`(?m)^profile-uid\s+seen\s+map\s+string->int64\s+-\s+24\s+8\s+\d+\s+4$`,
		`(?m)^profile-uid\s+timers/event-time\s+timers\s+-\s+-\s+24\s+8\s+\d+\s+4$`,
		`(?m)^profile-uid\s+batches\s+operator_list\s+int64\s+-\s+2\s+-\s+\d+\s+-$`,
		`(?m)^count\s+count\s+value\s+int64\s+-\s+8\s+8\s+\d+\s+4$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("output does not match %s:\n%s", re, r.stdout)
		}
	}

	r = flowctl(t, nil, "savepoint", "inspect", fixture+"/_metadata", "-o", "json")
	var rep struct {
		Savepoint bool `json:"savepoint"`
		Operators []struct {
			UID    string `json:"uid"`
			States []struct {
				Name    string `json:"name"`
				Entries int64  `json:"entries"`
			} `json:"states"`
		} `json:"operators"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || !rep.Savepoint || len(rep.Operators) != 4 || rep.Operators[1].States[0].Entries != 8 {
		t.Fatalf("-o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}

	r = flowctl(t, nil, "savepoint", "inspect", filepath.Join(t.TempDir(), "missing"))
	if r.code != ExitError || !strings.Contains(r.stderr, "missing") {
		t.Errorf("missing savepoint: exit %d, %q", r.code, r.stderr)
	}
}

// A job with the fixture's built-in operators but not profile-uid.
const checkJob = `name: counts
parallelism: 2
maxParallelism: 8
operators:
  - {id: gen, type: datagen, parallelism: 1, config: {count: 10}}
  - {id: count, type: count, inputs: [gen], keyBy: key}
  - {id: out, type: blackhole, inputs: [count], parallelism: 1}
`

// TestSavepointCheck runs the check in flowctl (no cluster answers: its
// own registry, with a note) and on a JobManager: the same results.
func TestSavepointCheck(t *testing.T) {
	t.Run("flowctl", func(t *testing.T) { testSavepointCheck(t, nil) })
	t.Run("jobmanager", func(t *testing.T) {
		c := startCluster(t)
		testSavepointCheck(t, map[string]string{EnvJobManager: c.JobManagerAddress()})
	})
}

func testSavepointCheck(t *testing.T, env map[string]string) {
	spec := writeSpec(t, checkJob)
	sp := copyFixture(t)

	// profile-uid's state has no operator: incompatible, exit 2, naming it.
	r := flowctl(t, env, "savepoint", "check", spec, sp)
	if r.code != ExitIncompatible {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, ExitIncompatible, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"error    the snapshot holds state of operator profile-uid (profile: states value \"profile\"",
		"--allow-non-restored-state",
		"info     operator count: keyed value state \"count\" (int64) is restored",
		"incompatible: 1 error(s)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, `job "counts" cannot start from file://`+sp) {
		t.Errorf("stderr %q", r.stderr)
	}
	if fellBack := strings.Contains(r.stderr, "note: no JobManager answered"); fellBack != (env == nil) {
		t.Errorf("fell back to flowctl's registry: %v, want %v (stderr %q)", fellBack, env == nil, r.stderr)
	}

	// Allowed: compatible with a warning, exit 0.
	r = flowctl(t, env, "savepoint", "check", spec, sp, "--allow-non-restored-state")
	if r.code != 0 || !strings.Contains(r.stdout, "warning  the snapshot holds state of operator profile-uid") ||
		!strings.Contains(r.stdout, "compatible: the job can start from this snapshot (1 warning(s))") {
		t.Fatalf("allowed: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// --set changes the job: parallelism above the max parallelism needs a
	// larger maxParallelism, which changes the key groups.
	r = flowctl(t, env, "savepoint", "check", spec, sp, "--allow-non-restored-state", "--set", "maxParallelism=16", "--set", "operators.count.parallelism=12", "-o", "json")
	var rep struct {
		Compatible bool `json:"compatible"`
		Findings   []struct {
			Severity, Code, UID string
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != ExitIncompatible || rep.Compatible {
		t.Fatalf("-o json: exit %d, %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	codes := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Severity == "error" {
			codes[f.Code+"/"+f.UID] = true
		}
	}
	if !codes["parallelism-above-max/count"] || !codes["max-parallelism-changed/count"] {
		t.Errorf("errors %v", codes)
	}

	// A spec problem is a usage error, as in validate.
	r = flowctl(t, env, "savepoint", "check", writeSpec(t, "name: x\noperators: []\n"), sp)
	if r.code != ExitUsage || r.stdout != "" {
		t.Errorf("bad spec: exit %d\n%s", r.code, r.stderr)
	}
	// A missing snapshot is an error (1), not "incompatible".
	r = flowctl(t, env, "savepoint", "check", spec, filepath.Join(t.TempDir(), "nope"))
	if r.code != ExitError || !strings.Contains(r.stderr, "nope") {
		t.Errorf("missing snapshot: exit %d, %q", r.code, r.stderr)
	}
}

func TestSavepointDispose(t *testing.T) {
	sp := copyFixture(t)
	r := flowctl(t, nil, "savepoint", "dispose", sp)
	if r.code != 0 || !regexp.MustCompile(`^disposed of savepoint file://`+regexp.QuoteMeta(sp)+`: deleted 7 files \(\d+\.\d KiB\)\n$`).MatchString(r.stdout) {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(sp); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(sp)
		if len(ents) != 0 {
			t.Fatalf("savepoint directory still holds %d entries", len(ents))
		}
	}
	// Disposing again: it is gone.
	r = flowctl(t, nil, "savepoint", "dispose", sp)
	if r.code != ExitError {
		t.Errorf("second dispose: exit %d %q", r.code, r.stdout)
	}
}

func TestSavepointClientErrors(t *testing.T) {
	addr := closedPort(t)
	want := "cannot reach the JobManager at " + addr + " (connection refused)"
	for _, args := range [][]string{
		{"savepoint", "trigger", "abc", "--dir", t.TempDir(), "--jobmanager", addr},
		{"stop", "abc", "--savepoint-dir", t.TempDir(), "--jobmanager", addr},
		{"stop", "abc", "--drain", "--jobmanager", addr},
	} {
		start := time.Now()
		r := flowctl(t, nil, args...)
		if r.code != ExitError || !strings.HasPrefix(r.stderr, want) || r.stdout != "" {
			t.Errorf("flowctl %v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("flowctl %v took %v", args, d)
		}
	}
	for _, args := range [][]string{
		{"savepoint"},
		{"savepoint", "trigger"},
		{"savepoint", "inspect"},
		{"savepoint", "check", "job.yaml"},
		{"savepoint", "dispose"},
		{"stop"},
	} {
		if r := flowctl(t, nil, args...); r.code != ExitUsage {
			t.Errorf("flowctl %v: exit %d, want %d: %s", args, r.code, ExitUsage, r.stderr)
		}
	}
}
