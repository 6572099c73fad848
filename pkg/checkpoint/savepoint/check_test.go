package savepoint_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
)

// check runs Check of the job (variant v, the given spec) against dir.
func check(t *testing.T, dir string, v variant, spec string, opts savepoint.CheckOptions) (*savepoint.CheckReport, error) {
	t.Helper()
	reg := registry(t, v)
	rep, err := savepoint.Check(context.Background(), parseJob(t, reg, spec), reg, dir, opts)
	if rep == nil {
		t.Fatalf("no report: %v", err)
	}
	if (err == nil) != rep.Compatible || (err != nil && !errors.Is(err, savepoint.ErrIncompatible)) {
		t.Fatalf("error %v with compatible=%v", err, rep.Compatible)
	}
	return rep, err
}

func findings(r *savepoint.CheckReport) string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString("  " + f.Code + " " + f.UID + " " + f.State + ": " + f.String() + "\n")
	}
	return b.String()
}

func wantFinding(t *testing.T, r *savepoint.CheckReport, sev savepoint.Severity, code, uid, state string) *savepoint.Finding {
	t.Helper()
	f := r.Find(code, uid, state)
	if f == nil || f.Severity != sev {
		t.Fatalf("want %s %s (uid %q, state %q); findings:\n%s", sev, code, uid, state, findings(r))
	}
	return f
}

func TestCheckUnchangedJob(t *testing.T) {
	dir := referenceSavepoint(t, false)
	for _, deep := range []bool{false, true} {
		r, err := check(t, dir, v1, jobSpec(2, 0, true), savepoint.CheckOptions{ReadData: deep})
		if err != nil {
			t.Fatalf("deep=%v: %v\n%s", deep, err, findings(r))
		}
		// Reading the data finds the version-1 values of "recent" (the
		// header-only read cannot see them: the metadata records no version).
		if r.Errors != 0 || r.Warnings != map[bool]int{false: 0, true: 1}[deep] {
			t.Fatalf("deep=%v: findings:\n%s", deep, findings(r))
		}
		if deep {
			f := wantFinding(t, r, savepoint.SeverityWarning, savepoint.CodeCodecVersion, "profile-uid", "recent")
			if !strings.Contains(f.Message, "json:visit version 1: the job's JSONCodec must have Version >= 1") {
				t.Errorf("message %q", f.Message)
			}
		}
		for _, s := range []string{"profile", "seen", "recent", "batches"} {
			wantFinding(t, r, savepoint.SeverityInfo, savepoint.CodeStateMatched, "profile-uid", s)
		}
		wantFinding(t, r, savepoint.SeverityInfo, savepoint.CodeStateMatched, "count", "count")
		wantFinding(t, r, savepoint.SeverityInfo, savepoint.CodeNotVerified, "gen", "")
		if r.Has(savepoint.CodeStateNew, "", "") || r.Has(savepoint.CodeOperatorNew, "", "") {
			t.Fatalf("nothing is new in an unchanged job:\n%s", findings(r))
		}
		if got := r.Inspect.Totals.CountsAvailable; got != deep {
			t.Errorf("deep=%v: counts available %v", deep, got)
		}
	}
}

// A JSON state's struct gains a field: same codec id, old values decode
// with the field at its zero value.
func TestCheckCompatibleFieldAddition(t *testing.T) {
	r, err := check(t, referenceSavepoint(t, true), v2AddField, jobSpec(2, 0, true), savepoint.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatalf("%v\n%s", err, findings(r))
	}
	wantFinding(t, r, savepoint.SeverityInfo, savepoint.CodeStateMatched, "profile-uid", "profile")
}

func TestCheckRemovedOperator(t *testing.T) {
	dir := referenceSavepoint(t, false)
	r, err := check(t, dir, v1, jobSpec(2, 0, false), savepoint.CheckOptions{})
	if err == nil {
		t.Fatalf("a removed operator passed:\n%s", findings(r))
	}
	f := wantFinding(t, r, savepoint.SeverityError, savepoint.CodeOperatorRemoved, "count", "")
	for _, want := range []string{"operator count", `value "count"`, "--allow-non-restored-state"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("message %q lacks %q", f.Message, want)
		}
	}
	if !strings.Contains(err.Error(), "operator count") {
		t.Errorf("error %q does not name the operator", err)
	}
	// Allowed: the state is dropped with a warning.
	r, err = check(t, dir, v1, jobSpec(2, 0, false), savepoint.CheckOptions{AllowNonRestoredState: true})
	if err != nil {
		t.Fatalf("allowed: %v", err)
	}
	wantFinding(t, r, savepoint.SeverityWarning, savepoint.CodeOperatorRemoved, "count", "")
}

func TestCheckRenamedState(t *testing.T) {
	r, err := check(t, referenceSavepoint(t, false), vRenamed, jobSpec(2, 0, true), savepoint.CheckOptions{ReadData: true})
	if err == nil {
		t.Fatalf("a renamed state passed:\n%s", findings(r))
	}
	f := wantFinding(t, r, savepoint.SeverityError, savepoint.CodeStateDropped, "profile-uid", "profile")
	if !strings.Contains(f.Message, "10 entries of 10 keys") {
		t.Errorf("message %q does not say what is lost", f.Message)
	}
	wantFinding(t, r, savepoint.SeverityInfo, savepoint.CodeStateNew, "profile-uid", "user-profile")
	if r.Errors != 1 {
		t.Errorf("%d errors, want 1:\n%s", r.Errors, findings(r))
	}
}

func TestCheckDroppedKeyedState(t *testing.T) {
	r, err := check(t, referenceSavepoint(t, false), vNoKeyed, jobSpec(2, 0, true), savepoint.CheckOptions{AllowNonRestoredState: true})
	if err != nil {
		t.Fatalf("allowed drop failed: %v", err)
	}
	wantFinding(t, r, savepoint.SeverityWarning, savepoint.CodeStateDropped, "profile-uid", "profile")
	wantFinding(t, r, savepoint.SeverityWarning, savepoint.CodeStateDropped, "profile-uid", "seen")
	wantFinding(t, r, savepoint.SeverityInfo, savepoint.CodeStateMatched, "profile-uid", "batches")
}

func TestCheckChangedKind(t *testing.T) {
	r, err := check(t, referenceSavepoint(t, false), vKindChange, jobSpec(2, 0, true), savepoint.CheckOptions{})
	if err == nil {
		t.Fatalf("a kind change passed:\n%s", findings(r))
	}
	f := wantFinding(t, r, savepoint.SeverityError, savepoint.CodeKindChanged, "profile-uid", "profile")
	if !strings.Contains(f.Message, "value in the snapshot and declared list") {
		t.Errorf("message %q", f.Message)
	}
	// AllowNonRestoredState does not excuse a kind change.
	if _, err := check(t, referenceSavepoint(t, false), vKindChange, jobSpec(2, 0, true), savepoint.CheckOptions{AllowNonRestoredState: true}); err == nil {
		t.Fatal("kind change passed with --allow-non-restored-state")
	}
}

func TestCheckChangedCodec(t *testing.T) {
	r, err := check(t, referenceSavepoint(t, false), vCodecChange, jobSpec(2, 0, true), savepoint.CheckOptions{})
	if err == nil {
		t.Fatalf("a codec change passed:\n%s", findings(r))
	}
	f := wantFinding(t, r, savepoint.SeverityError, savepoint.CodeCodecChanged, "profile-uid", "profile")
	if !strings.Contains(f.Message, "json:profile in the snapshot and json:profile-v2 in the job") {
		t.Errorf("message %q", f.Message)
	}
}

func TestCheckParallelism(t *testing.T) {
	// A savepoint with 4 key groups.
	reg := registry(t, v1)
	dir := buildSavepoint(t, reg, parseJob(t, reg, jobSpec(2, 4, true)), t.TempDir(), buildOptions{Records: clicks(40, 10, 3)})

	// Parallelism 8 (max parallelism left at its default 128).
	r, err := check(t, dir, v1, jobSpec(8, 0, true), savepoint.CheckOptions{})
	if err == nil {
		t.Fatalf("parallelism above max parallelism passed:\n%s", findings(r))
	}
	f := wantFinding(t, r, savepoint.SeverityError, savepoint.CodeParallelismAboveMax, "profile-uid", "")
	if !strings.Contains(f.Message, "parallelism 8 is above the snapshot's max parallelism 4") {
		t.Errorf("message %q", f.Message)
	}
	wantFinding(t, r, savepoint.SeverityError, savepoint.CodeMaxParallelismChanged, "profile-uid", "")

	// Rescaling 2 -> 4 within max parallelism 4 is fine.
	r, err = check(t, dir, v1, jobSpec(4, 4, true), savepoint.CheckOptions{})
	if err != nil {
		t.Fatalf("rescale within max parallelism: %v\n%s", err, findings(r))
	}
	wantFinding(t, r, savepoint.SeverityInfo, savepoint.CodeRescale, "profile-uid", "")

	// Only the max parallelism changed.
	r, _ = check(t, dir, v1, jobSpec(2, 8, true), savepoint.CheckOptions{})
	wantFinding(t, r, savepoint.SeverityError, savepoint.CodeMaxParallelismChanged, "count", "")
	if r.Has(savepoint.CodeParallelismAboveMax, "", "") {
		t.Errorf("parallelism 2 reported above max parallelism 4:\n%s", findings(r))
	}
}

func TestCheckNewOperator(t *testing.T) {
	// Savepoint of the job without count; the job adds it.
	reg := registry(t, v1)
	dir := buildSavepoint(t, reg, parseJob(t, reg, jobSpec(2, 0, false)), t.TempDir(), buildOptions{Records: clicks(20, 5, 2)})
	r, err := check(t, dir, v1, jobSpec(2, 0, true), savepoint.CheckOptions{})
	if err != nil {
		t.Fatalf("%v\n%s", err, findings(r))
	}
	wantFinding(t, r, savepoint.SeverityInfo, savepoint.CodeOperatorNew, "count", "")
}

// An operator whose Open fails in the dry run is an error: its states are
// unknown (and it would fail at start too).
func TestCheckOpenFails(t *testing.T) {
	dir := referenceSavepoint(t, false)
	// A keyed type without keyBy is rejected by the spec parser; drop the
	// profile operator's keyBy from its graph vertex (as an SDK graph may).
	reg := registry(t, v1)
	g := parseJob(t, reg, jobSpec(2, 0, true))
	for _, v := range g.GetVertices() {
		if v.GetId() == "profile" {
			v.KeyBy = ""
		}
	}
	r, err := savepoint.Check(context.Background(), g, reg, dir, savepoint.CheckOptions{})
	if err == nil || r == nil {
		t.Fatalf("got %v", err)
	}
	f := wantFinding(t, r, savepoint.SeverityError, savepoint.CodeOpenFailed, "profile-uid", "")
	if !strings.Contains(f.Message, "keyBy") {
		t.Errorf("message %q", f.Message)
	}
}

func TestCheckUnknownSnapshot(t *testing.T) {
	reg := registry(t, v1)
	r, err := savepoint.Check(context.Background(), parseJob(t, reg, jobSpec(2, 0, true)), reg, t.TempDir()+"/missing", savepoint.CheckOptions{})
	if r != nil || err == nil || errors.Is(err, savepoint.ErrIncompatible) {
		t.Fatalf("got %v, %v", r, err)
	}
}

// A native Pebble checkpoint whose metadata lists no states: the keyed
// states cannot be compared, which is a warning, not "new state".
func TestCheckNativeCheckpointWithoutDescriptors(t *testing.T) {
	reg := registry(t, v1)
	g := parseJob(t, reg, jobSpec(2, 0, true))
	dir := buildSavepoint(t, reg, g, t.TempDir(), buildOptions{Pebble: true, Checkpoint: true, Records: clicks(50, 10, 3)})
	// Strip the descriptors, as a runtime that does not record them would.
	sn, err := storage.OpenSnapshot(context.Background(), savepoint.URL(dir))
	if err != nil {
		t.Fatal(err)
	}
	md := sn.Metadata
	_ = sn.Close()
	for _, op := range md.GetOperators() {
		op.States = nil
	}
	root, err := storage.Open(context.Background(), savepoint.URL(filepath.Dir(filepath.Dir(dir))))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := root.Delete(context.Background(), testJobID+"/chk-7/_metadata"); err != nil {
		t.Fatal(err)
	}
	if err := root.WriteMetadata(context.Background(), testJobID+"/chk-7", md); err != nil {
		t.Fatal(err)
	}
	r, err := check(t, dir, v1, jobSpec(2, 0, true), savepoint.CheckOptions{})
	if err != nil {
		t.Fatalf("%v\n%s", err, findings(r))
	}
	wantFinding(t, r, savepoint.SeverityWarning, savepoint.CodeNotVerified, "profile-uid", "")
	if r.Has(savepoint.CodeStateNew, "profile-uid", "profile") || r.Has(savepoint.CodeStateNew, "count", "count") {
		t.Fatalf("keyed states of a native checkpoint reported new:\n%s", findings(r))
	}
	// Operator state is read in any format.
	wantFinding(t, r, savepoint.SeverityInfo, savepoint.CodeStateMatched, "profile-uid", "batches")
}

// TestCheckSourceHook: a source type's CheckRestore gets the snapshot's
// state of its uid and its new config; its report becomes a source in the
// report, with an error for removed streams (a warning with
// AllowNonRestoredState); a hook that panics is an error finding, not a
// crash.
func TestCheckSourceHook(t *testing.T) {
	dir := referenceSavepoint(t, false)
	withHook := func(hook func(api.RestoreView) (api.RestoreCheck, error)) *api.Registry {
		reg := registry(t, v1)
		gen, err := reg.LookupKind("datagen", api.KindSource)
		if err != nil {
			t.Fatal(err)
		}
		typ := *gen
		typ.CheckRestore = hook
		out := api.NewRegistry()
		for _, x := range reg.Types() {
			if x.Name != "datagen" {
				if err := out.Register(*x); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := out.Register(typ); err != nil {
			t.Fatal(err)
		}
		return out
	}
	var seen api.RestoreView
	reg := withHook(func(v api.RestoreView) (api.RestoreCheck, error) {
		seen = v
		return api.RestoreCheck{Streams: []api.RestoredStream{{Name: "s", Partitions: []api.RestoredPartition{{Partition: 0, Offset: 5, Stop: -1}}}},
			Removed: []string{"s"}, Now: "topics [t]"}, nil
	})
	graph := parseJob(t, reg, jobSpec(2, 0, true))
	rep, err := savepoint.Check(context.Background(), graph, reg, dir, savepoint.CheckOptions{})
	if !errors.Is(err, savepoint.ErrIncompatible) || len(rep.Sources) != 1 || rep.Sources[0].UID != "gen" || seen.UID != "gen" || seen.Config.Int("count") != 10 {
		t.Fatalf("check: %v; sources %+v; the hook saw %+v", err, rep.Sources, seen)
	}
	f := wantFinding(t, rep, savepoint.SeverityError, savepoint.CodeSourceRemoved, "gen", "")
	if !strings.Contains(f.Message, "topic(s) s that its config no longer reads (it now reads topics [t])") {
		t.Errorf("message %q", f.Message)
	}
	wantFinding(t, rep, savepoint.SeverityInfo, savepoint.CodeSourceState, "gen", "")
	rep, err = savepoint.Check(context.Background(), graph, reg, dir, savepoint.CheckOptions{AllowNonRestoredState: true})
	if err != nil {
		t.Fatalf("allowing non-restored state: %v", err)
	}
	wantFinding(t, rep, savepoint.SeverityWarning, savepoint.CodeSourceRemoved, "gen", "")

	reg = withHook(func(api.RestoreView) (api.RestoreCheck, error) { panic("boom") })
	rep, err = savepoint.Check(context.Background(), parseJob(t, reg, jobSpec(2, 0, true)), reg, dir, savepoint.CheckOptions{AllowNonRestoredState: true})
	if !errors.Is(err, savepoint.ErrIncompatible) {
		t.Fatalf("a panicking hook: %v", err)
	}
	if f := wantFinding(t, rep, savepoint.SeverityError, savepoint.CodeSourceUnreadable, "gen", ""); !strings.Contains(f.Message, "boom") {
		t.Errorf("message %q", f.Message)
	}
}
