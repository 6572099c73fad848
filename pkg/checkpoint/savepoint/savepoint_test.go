package savepoint_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/keygroup"
)

// The reference savepoint: 200 clicks of 10 users over 3 pages, through
// the profile operator and the built-in count, at parallelism 2.
func referenceSavepoint(t *testing.T, pebble bool) string {
	t.Helper()
	reg := registry(t, v1)
	g := parseJob(t, reg, jobSpec(2, 0, true))
	return buildSavepoint(t, reg, g, t.TempDir(), buildOptions{Pebble: pebble, Records: clicks(200, 10, 3), SourcePosition: []byte("offset=200")})
}

func op(t *testing.T, r *savepoint.Report, uid string) *savepoint.OperatorReport {
	t.Helper()
	for i := range r.Operators {
		if r.Operators[i].UID == uid {
			return &r.Operators[i]
		}
	}
	t.Fatalf("report has no operator %q", uid)
	return nil
}

func state(t *testing.T, o *savepoint.OperatorReport, name string) *savepoint.StateReport {
	t.Helper()
	s := o.State(name)
	if s == nil {
		t.Fatalf("operator %s has no state %q: %+v", o.UID, name, o.States)
	}
	return s
}

func TestInspectCountsEveryState(t *testing.T) {
	for _, backend := range []string{"heap", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			dir := referenceSavepoint(t, backend == "pebble")
			r, err := savepoint.Inspect(context.Background(), "file://"+dir)
			if err != nil {
				t.Fatal(err)
			}
			if !r.Savepoint || r.CheckpointID != 7 || r.JobName != "profiles" || r.FormatVersion != 1 || len(r.Operators) != 4 {
				t.Fatalf("report header: %+v", r)
			}
			p := op(t, r, "profile-uid")
			if p.Type != "profile" || p.Parallelism != 2 || p.MaxParallelism != 128 || p.Subtasks != 2 || !p.CountsAvailable {
				t.Fatalf("profile operator: %+v", p)
			}
			if got := savepoint.RangesString(p.KeyGroups); got != "0-127" {
				t.Errorf("profile key groups %s, want 0-127", got)
			}
			// Key groups with data are exactly those of the 10 users.
			want := map[int]bool{}
			for _, rec := range clicks(10, 10, 3) {
				want[keygroup.Assign(rec.Key, 128)] = true
			}
			n := 0
			for _, rg := range p.KeyGroupsWithData {
				for kg := rg.Start; kg <= rg.End; kg++ {
					if !want[kg] {
						t.Errorf("key group %d has data but no user maps to it", kg)
					}
					n++
				}
			}
			if n != len(want) {
				t.Errorf("%d key groups with data, want %d", n, len(want))
			}
			prof := state(t, p, "profile")
			if prof.Kind != "value" || !prof.Keyed || prof.ValueCodec != "json:profile" || prof.Entries != 10 || prof.Keys != 10 ||
				prof.MaxValueVersion == nil || *prof.MaxValueVersion != 0 || prof.KeyGroups != len(want) || !prof.Counted {
				t.Errorf("profile state: %+v", prof)
			}
			// user u sees all 3 pages: 30 map entries over 10 keys.
			seen := state(t, p, "seen")
			if seen.Kind != "map" || seen.KeyCodec != "string" || seen.ValueCodec != "int64" || seen.Entries != 30 || seen.Keys != 10 {
				t.Errorf("seen state: %+v", seen)
			}
			tm := state(t, p, savepoint.EventTimers)
			if tm.Kind != savepoint.KindTimers || tm.Entries != 200 || tm.Keys != 10 {
				t.Errorf("timers: %+v", tm)
			}
			// One list per user, one element per click, JSON version 1,
			// with TTL.
			rc := state(t, p, "recent")
			if rc.Kind != "list" || rc.Entries != 10 || rc.Keys != 10 || rc.Elements != 200 || rc.TTL == "" ||
				rc.MaxValueVersion == nil || *rc.MaxValueVersion != 1 {
				t.Errorf("recent state: %+v", rc)
			}
			b := state(t, p, "batches")
			if b.Kind != savepoint.KindOperatorList || b.Keyed || b.ValueCodec != "int64" || b.Entries != 2 {
				t.Errorf("batches: %+v", b)
			}
			// Order: keyed states by name, timers, operator states.
			var names []string
			for _, s := range p.States {
				names = append(names, s.Name)
			}
			if got := strings.Join(names, ","); got != "profile,recent,seen,timers/event-time,batches" {
				t.Errorf("state order %s", got)
			}
			c := state(t, op(t, r, "count"), "count")
			if c.Kind != "value" || c.ValueCodec != "int64" || c.Entries != 10 || c.Keys != 10 || c.Bytes != 10*(int64(len("user-0"))+8) {
				t.Errorf("count state: %+v", c)
			}
			gen := op(t, r, "gen")
			if gen.SourcePositions != 1 || gen.HasKeyedState() || !gen.HasState() {
				t.Errorf("source: %+v", gen)
			}
			if out := op(t, r, "out"); out.HasState() {
				t.Errorf("sink has state: %+v", out)
			}
			if r.Totals.Operators != 4 || r.Totals.States != 6 || r.Totals.Entries != 10+10+30+200+2+10 || !r.Totals.CountsAvailable || r.Totals.Files == 0 || r.Totals.FileBytes == 0 {
				t.Errorf("totals: %+v", r.Totals)
			}
		})
	}
}

// Savepoints are backend-neutral: heap and Pebble give the same report
// (and the same files).
func TestInspectSameOnHeapAndPebble(t *testing.T) {
	ctx := context.Background()
	h, err := savepoint.Inspect(ctx, referenceSavepoint(t, false))
	if err != nil {
		t.Fatal(err)
	}
	p, err := savepoint.Inspect(ctx, referenceSavepoint(t, true))
	if err != nil {
		t.Fatal(err)
	}
	h.Path, p.Path = "", ""
	if a, b := mustJSON(t, h), mustJSON(t, p); a != b {
		t.Fatalf("heap and pebble reports differ:\n%s\n---\n%s", a, b)
	}
}

// A native (incremental Pebble) checkpoint reports what the metadata says.
func TestInspectNativeCheckpoint(t *testing.T) {
	reg := registry(t, v1)
	g := parseJob(t, reg, jobSpec(2, 0, true))
	dir := buildSavepoint(t, reg, g, t.TempDir(), buildOptions{Pebble: true, Checkpoint: true, Records: clicks(50, 10, 3)})
	r, err := savepoint.Inspect(context.Background(), dir+"/_metadata")
	if err != nil {
		t.Fatal(err)
	}
	if r.Savepoint || r.Totals.CountsAvailable {
		t.Fatalf("native checkpoint: savepoint %v, counts available %v", r.Savepoint, r.Totals.CountsAvailable)
	}
	p := op(t, r, "profile-uid")
	if p.CountsAvailable || strings.Join(p.KeyedFormats, ",") != snapshot.FormatPebble || savepoint.RangesString(p.KeyGroups) != "0-127" || p.KeyGroupsWithData != nil {
		t.Fatalf("profile: %+v", p)
	}
	// Declarations come from the metadata.
	if s := state(t, p, "seen"); s.Counted || s.KeyCodec != "string" || s.ValueCodec != "int64" || s.Kind != "map" || s.Entries != 0 {
		t.Errorf("seen: %+v", s)
	}
	if s := state(t, p, "batches"); !s.Counted || s.Entries != 2 {
		t.Errorf("operator state is read in any format: %+v", s)
	}
}

func TestInspectRelocatedSavepoint(t *testing.T) {
	src := referenceSavepoint(t, false)
	want, err := savepoint.Inspect(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "moved", "sp")
	copyDir(t, src, dst)
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	got, err := savepoint.Inspect(context.Background(), "file://"+dst)
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != "file://"+dst {
		t.Errorf("path %s", got.Path)
	}
	want.Path, got.Path = "", ""
	if mustJSON(t, want) != mustJSON(t, got) {
		t.Fatal("a copied savepoint inspects differently")
	}
	// It also checks against the unchanged job.
	reg := registry(t, v1)
	if _, err := savepoint.Check(context.Background(), parseJob(t, reg, jobSpec(2, 0, true)), reg, dst, savepoint.CheckOptions{ReadData: true}); err != nil {
		t.Fatal(err)
	}
}

func TestInspectCorruptFile(t *testing.T) {
	dir := referenceSavepoint(t, false)
	// Flip a byte near the end of a keyed file: in a section, past the header.
	name := filepath.Join(dir, "profile-uid-1-keyed.kst")
	if _, err := os.Stat(name); err != nil {
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("keyed file name changed (%v); files: %v", err, names)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-10] ^= 0xff
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = savepoint.Inspect(context.Background(), dir)
	if !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), "profile-uid-1-keyed.kst") {
		t.Fatalf("got %v, want ErrCorrupt naming the file", err)
	}
}

func TestInspectMissing(t *testing.T) {
	_, err := savepoint.Inspect(context.Background(), filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("got %v", err)
	}
}
