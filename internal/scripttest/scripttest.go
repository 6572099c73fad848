// Package scripttest runs scripted scenario files for the tests of pure
// state machines (pkg/barrier, pkg/checkpoint), in the style of etcd raft's
// interaction tests. A file is a sequence of blocks:
//
//	# comment
//	command key=value key=value
//	----
//	expected output line
//	expected output line
//
// separated by blank lines. Each command's output is compared with the
// expected lines; with rewrite, the file is rewritten with the actual
// output instead (review the diff before committing).
package scripttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RunDir runs every testdata/*.txt scenario in dir as a subtest named after
// the file. newRun gives each file a fresh command runner (its own state
// machine); a directory without scenarios is an error.
func RunDir(t *testing.T, dir string, rewrite bool, newRun func(t *testing.T) func(cmd string, args map[string]string) (string, error)) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no scenarios in %s/*.txt", dir)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			Run(t, f, rewrite, newRun(t))
		})
	}
}

// Run interprets the scenario file at path, calling run for each command
// with its key=value arguments.
func Run(t *testing.T, path string, rewrite bool, run func(cmd string, args map[string]string) (string, error)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var out strings.Builder
	for i := 0; i < len(lines); {
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			out.WriteString(lines[i] + "\n")
			i++
			continue
		}
		cmdLine := i + 1
		out.WriteString(lines[i] + "\n")
		i++
		if i >= len(lines) || strings.TrimSpace(lines[i]) != "----" {
			t.Fatalf("%s:%d: want ---- after the command", path, cmdLine)
		}
		out.WriteString("----\n")
		i++
		var want []string
		for i < len(lines) && strings.TrimSpace(lines[i]) != "" {
			want = append(want, strings.TrimSpace(lines[i]))
			i++
		}
		fields := strings.Fields(line)
		args := map[string]string{}
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(f, "=")
			args[k] = v
		}
		got, err := run(fields[0], args)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", path, cmdLine, line, err)
		}
		out.WriteString(got + "\n")
		if w := strings.Join(want, "\n"); got != w && !rewrite {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, cmdLine, line, got, w)
		}
	}
	if rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
