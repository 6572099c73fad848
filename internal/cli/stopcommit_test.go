package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A stop with savepoint ends FINISHED only once every sink committed the
// savepoint: nothing is left in progress and the committed output ends
// exactly at the savepoint (the sources emit nothing after its barrier).
// Before, a stop canceled the tasks while the notification of the
// savepoint's completion was still on its way, leaving in-progress files.
func TestStopCommitsEveryFile(t *testing.T) {
	c := startCluster(t)
	env := map[string]string{EnvJobManager: c.JobManagerAddress()}
	for round := range 3 {
		out := t.TempDir()
		spec := writeSpec(t, fmt.Sprintf(`name: stop-commits
parallelism: 2
operators:
  - {id: gen, type: datagen, config: {rate: 4000, keys: 10}}
  - {id: out, type: file, inputs: [gen], config: {path: %q}}
checkpoints: {interval: 200ms}
`, out))
		r := flowctl(t, env, "run", spec, "--detach")
		if r.code != 0 {
			t.Fatalf("run: exit %d: %s", r.code, r.stderr)
		}
		id := strings.TrimSuffix(r.stdout, "\n")
		waitFor(t, func() bool {
			return regexp.MustCompile(`(?m)^`+id+`\s+stop-commits\s+RUNNING`).MatchString(flowctl(t, env, "list").stdout) && committedLines(t, out) > 0
		}, "job RUNNING with committed output")
		if r := flowctl(t, env, "savepoint", "trigger", id, "--dir", t.TempDir()); r.code != 0 {
			t.Fatalf("savepoint trigger: exit %d: %s", r.code, r.stderr)
		}
		if r := flowctl(t, env, "stop", id, "--savepoint-dir", t.TempDir()); r.code != 0 {
			t.Fatalf("stop: exit %d: %s", r.code, r.stderr)
		}
		ents, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("round %d: after the stop, %s is left uncommitted", round, e.Name())
			}
		}
	}
}

// committedLines counts the records in the visible files of dir.
func committedLines(t *testing.T, dir string) int {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			n++
		}
		f.Close()
	}
	return n
}
