package savepoint_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
)

var writeGolden = flag.Bool("write-golden", false, "write missing golden fixtures under testdata/ (never overwrites)")

// goldenDir is a savepoint of format v1 (metadata v1, canonical keyed
// files FLOWKST1, operator-state files FLOWOPS1): 24 clicks of 8 users
// over 3 pages through the profile operator and count, parallelism 2, max
// parallelism 8, heap backends. Frozen: every later Flow must inspect it
// to exactly testdata/v1.inspect.json.
const goldenDir = "testdata/v1"

func TestGoldenV1(t *testing.T) {
	want := filepath.Join("testdata", "v1.inspect.json")
	if *writeGolden {
		if _, err := os.Stat(goldenDir); err == nil {
			t.Fatalf("%s exists: golden fixtures are frozen, never rewritten", goldenDir)
		}
		reg := registry(t, v1)
		g := parseJob(t, reg, jobSpec(2, 8, true))
		tmp := buildSavepoint(t, reg, g, t.TempDir(), buildOptions{Records: clicks(24, 8, 3), SourcePosition: []byte("offset=24")})
		copyDir(t, tmp, goldenDir)
		r, err := savepoint.Inspect(context.Background(), goldenDir)
		if err != nil {
			t.Fatal(err)
		}
		r.Path = ""
		if err := os.WriteFile(want, []byte(mustJSON(t, r)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := savepoint.Inspect(context.Background(), goldenDir)
	if err != nil {
		t.Fatalf("inspect the v1 fixture: %v", err)
	}
	abs, _ := filepath.Abs(goldenDir)
	if r.Path != "file://"+filepath.ToSlash(abs) {
		t.Errorf("path %s", r.Path)
	}
	r.Path = ""
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustJSON(t, r) + "\n"; got != string(b) {
		t.Fatalf("the v1 fixture inspects differently from %s:\n%s", want, got)
	}
	// And the job it was taken from still fits it.
	reg := registry(t, v1)
	rep, err := savepoint.Check(context.Background(), parseJob(t, reg, jobSpec(2, 8, true)), reg, goldenDir, savepoint.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatalf("check against the v1 fixture: %v", err)
	}
	// The one warning: "recent" holds json:visit values of version 1.
	if f := rep.Find(savepoint.CodeCodecVersion, "profile-uid", "recent"); rep.Warnings != 1 || f == nil || f.Severity != savepoint.SeverityWarning {
		t.Fatalf("warnings: %+v", rep.Findings)
	}
}
