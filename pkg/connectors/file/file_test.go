package file

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

type testCtx struct{ sub, par int }

func (c testCtx) Info() api.TaskInfo             { return api.TaskInfo{SubtaskIndex: c.sub, Parallelism: c.par} }
func (c testCtx) Logger() *slog.Logger           { return slog.New(slog.DiscardHandler) }
func (c testCtx) Metrics() prometheus.Registerer { return prometheus.NewRegistry() }
func (c testCtx) Clock() api.Clock               { return nil }
func (c testCtx) Done() <-chan struct{}          { return nil }
func (c testCtx) DataDir() string                { return "" }

type sliceOut struct{ vals []string }

func (o *sliceOut) Collect(r api.Record) { o.vals = append(o.vals, string(r.Value)) }
func (o *sliceOut) EmitWatermark(int64)  {}
func (o *sliceOut) MarkIdle()            {}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newSource(t *testing.T, path string, sub, par int) *Source {
	t.Helper()
	typ := SourceType()
	cfg, err := typ.DecodeConfig(map[string]any{"path": path})
	if err != nil {
		t.Fatal(err)
	}
	s, err := typ.NewSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*Source)
}

// drain reads to the end, collecting line errors instead of stopping.
func drain(t *testing.T, s *Source) ([]string, []error) {
	out := &sliceOut{}
	var errs []error
	for {
		st, err := s.Next(out)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || !le.RecordError() {
				t.Fatal(err)
			}
			errs = append(errs, err)
			continue
		}
		if st.End {
			return out.vals, errs
		}
	}
}

func TestSourceSplitsFilesAndReportsBadLines(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.jsonl"), "{\"n\":1}\n\n{\"n\":2}\r\n")
	write(t, filepath.Join(dir, "b.json"), "{\"n\":3}\nnot json\n{\"n\":4}")
	write(t, filepath.Join(dir, "c.jsonl"), "{\"n\":5}\n")
	write(t, filepath.Join(dir, "ignored.txt"), "{\"n\":99}\n")
	var all []string
	for sub := 0; sub < 2; sub++ {
		s := newSource(t, dir, sub, 2)
		if err := s.Open(testCtx{sub, 2}); err != nil {
			t.Fatal(err)
		}
		vals, errs := drain(t, s)
		all = append(all, vals...)
		if sub == 1 && (len(errs) != 1 || !strings.Contains(errs[0].Error(), "b.json line 2")) {
			t.Fatalf("errors = %v, want one naming b.json line 2", errs)
		}
		s.Close()
	}
	sort.Strings(all)
	if got := strings.Join(all, " "); got != `{"n":1} {"n":2} {"n":3} {"n":4} {"n":5}` {
		t.Fatalf("records = %s", got)
	}
}

func TestSourcePositionRestore(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		b.WriteString("{\"n\":" + string(rune('0'+i%10)) + "}\n")
	}
	write(t, filepath.Join(dir, "a.jsonl"), b.String())
	write(t, filepath.Join(dir, "b.jsonl"), "{\"last\":true}\n")
	s := newSource(t, dir, 0, 1)
	if err := s.Open(testCtx{0, 1}); err != nil {
		t.Fatal(err)
	}
	out := &sliceOut{}
	if _, err := s.Next(out); err != nil { // one batch: 512 lines
		t.Fatal(err)
	}
	pos, err := s.Position()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	r := newSource(t, dir, 0, 1)
	if err := r.Restore(pos); err != nil {
		t.Fatal(err)
	}
	if err := r.Open(testCtx{0, 1}); err != nil {
		t.Fatal(err)
	}
	rest, _ := drain(t, r)
	r.Close()
	if len(out.vals)+len(rest) != 1001 || rest[len(rest)-1] != `{"last":true}` {
		t.Fatalf("read %d then %d records after restore from %s", len(out.vals), len(rest), pos)
	}
}

func TestSinkCommitsOnFinish(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	typ := SinkType()
	cfg, err := typ.DecodeConfig(map[string]any{"path": dir, "max_file_size": 40})
	if err != nil {
		t.Fatal(err)
	}
	s, err := typ.NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(testCtx{1, 2}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := s.Write(api.Record{Value: []byte(`{"i":` + string(rune('0'+i)) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	committed := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "part-*"))
		sort.Strings(m)
		return m
	}
	if c := committed(); len(c) != 0 {
		t.Fatalf("files committed before Finish: %v", c)
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	files := committed()
	if len(files) < 2 {
		t.Fatalf("max_file_size 40 should roll: %v", files)
	}
	var all []byte
	for i := range files {
		b, err := os.ReadFile(filepath.Join(dir, PartName(1, i)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if n := bytes.Count(all, []byte("\n")); n != 10 {
		t.Fatalf("%d lines committed, want 10", n)
	}
	if hidden, _ := filepath.Glob(filepath.Join(dir, ".*")); len(hidden) != 0 {
		t.Fatalf("in-progress files left: %v", hidden)
	}
	// A second run continues the numbering instead of overwriting.
	s2, _ := typ.NewSink(cfg)
	if err := s2.Open(testCtx{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := s2.Write(api.Record{Value: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s2.Finish(); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if got := len(committed()); got != len(files)+1 {
		t.Fatalf("%d files after second run, want %d", got, len(files)+1)
	}
}

// stateCtx is a testCtx with an operator state store.
type stateCtx struct {
	testCtx
	store *statebackend.OperatorStore
}

func (c stateCtx) OperatorStateStore() api.OperatorStateStore { return c.store }

func sinkFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// TestSinkTwoPhaseCommit walks the exactly-once protocol: a snapshot makes
// the part pending, completion commits it, and a restore from an earlier
// checkpoint commits its pending parts again and deletes everything written
// after it (in progress, pending and committed at end of input).
func TestSinkTwoPhaseCommit(t *testing.T) {
	dir := t.TempDir()
	newSink := func(store *statebackend.OperatorStore) *Sink {
		s := &Sink{dir: dir}
		if err := s.Open(stateCtx{testCtx{0, 1}, store}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	rec := func(s *Sink, v string) {
		if err := s.Write(api.Record{Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	store := statebackend.NewOperatorStore()
	s := newSink(store)
	if err := s.InitializeState(false); err != nil {
		t.Fatal(err)
	}
	rec(s, `"a"`)
	if err := s.SnapshotState(1); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sinkFiles(t, dir), " "); got != ".part-0-0.jsonl.inprogress" {
		t.Fatalf("after snapshot 1: %s", got)
	}
	rec(s, `"b"`)
	if err := s.SnapshotState(2); err != nil {
		t.Fatal(err)
	}
	snap2 := store.Snapshot() // what checkpoint 2 stores
	if err := s.NotifyCheckpointComplete(1); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sinkFiles(t, dir), " "); got != ".part-0-1.jsonl.inprogress part-0-0.jsonl" {
		t.Fatalf("after complete 1: %s", got)
	}
	rec(s, `"c"`) // after checkpoint 2: replayed after the restore
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := strings.Join(sinkFiles(t, dir), " "); got != "part-0-0.jsonl part-0-1.jsonl part-0-2.jsonl" {
		t.Fatalf("after finish: %s", got)
	}

	// Restore from checkpoint 2 (the notification of 2 was lost): part 1 is
	// committed (already), part 2 (written after 2) is deleted.
	store2 := statebackend.NewOperatorStore()
	if err := store2.Restore(snap2); err != nil {
		t.Fatal(err)
	}
	r := newSink(store2)
	if err := r.InitializeState(true); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sinkFiles(t, dir), " "); got != "part-0-0.jsonl part-0-1.jsonl" {
		t.Fatalf("after restore: %s", got)
	}
	rec(r, `"c"`)
	if err := r.Finish(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, f := range sinkFiles(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Fields(string(b))...)
	}
	if got := strings.Join(lines, ","); got != `"a","b","c"` {
		t.Fatalf("output %s, want each record once", got)
	}

	// A pending part that vanished is reported, not ignored.
	store3 := statebackend.NewOperatorStore()
	if err := store3.Restore(snap2); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "part-0-1.jsonl")); err != nil {
		t.Fatal(err)
	}
	if err := newSink(store3).InitializeState(true); err == nil || !strings.Contains(err.Error(), "part-0-1.jsonl") {
		t.Fatalf("missing pending part: err = %v", err)
	}
}

// TestSourceSplitsRescale reads a directory at parallelism 1, then 3, then
// 2, each attempt restoring the previous one's splits the way the runtime
// does (concatenated in subtask order, assigned round robin): every line is
// read exactly once.
func TestSourceSplitsRescale(t *testing.T) {
	dir := t.TempDir()
	n := 0
	for f, lines := range []int{700, 300, 1200, 5, 600} {
		var b strings.Builder
		for i := 0; i < lines; i++ {
			fmt.Fprintf(&b, "{\"n\":%d}\n", n)
			n++
		}
		write(t, filepath.Join(dir, fmt.Sprintf("f%d.jsonl", f)), b.String())
	}
	seen := map[string]int{}
	step := func(splits [][]byte, fresh bool, par, batches int) [][]byte {
		var next [][]byte
		for i := 0; i < par; i++ {
			s := newSource(t, dir, i, par)
			if err := s.Open(testCtx{i, par}); err != nil {
				t.Fatal(err)
			}
			if !fresh {
				if err := s.RestoreSplits(api.AssignSplits(splits, i, par)); err != nil {
					t.Fatal(err)
				}
			}
			out := &sliceOut{}
			for b := 0; batches == 0 || b < batches; b++ {
				st, err := s.Next(out)
				if err != nil {
					t.Fatal(err)
				}
				if st.End {
					break
				}
			}
			for _, v := range out.vals {
				seen[v]++
			}
			sp, err := s.Splits()
			if err != nil {
				t.Fatal(err)
			}
			next = append(next, sp...)
			s.Close()
		}
		return next
	}
	s1 := step(nil, true, 1, 1)
	if len(s1) != 5 || !strings.Contains(string(s1[0]), `f0.jsonl","offset":`) || strings.Contains(string(s1[0]), `"offset":0}`) {
		t.Fatalf("splits after one batch: %q", s1)
	}
	s3 := step(s1, false, 3, 1)
	if rest := step(s3, false, 2, 0); len(rest) != 0 {
		t.Fatalf("splits left after reading to the end: %q", rest)
	}
	for i := 0; i < n; i++ {
		if c := seen[fmt.Sprintf("{\"n\":%d}", i)]; c != 1 {
			t.Fatalf("line %d read %d times", i, c)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct lines, want %d", len(seen), n)
	}
	bad := newSource(t, dir, 0, 1)
	if err := bad.RestoreSplits([][]byte{[]byte(`{"v":9,"file":"x","offset":0}`)}); err == nil {
		t.Fatal("split of a future format version accepted")
	}
}

// TestSourceRestoreAfterOpen: the runtime restores a position after Open.
func TestSourceRestoreAfterOpen(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.jsonl"), "{\"n\":1}\n{\"n\":2}\n")
	write(t, filepath.Join(dir, "b.jsonl"), "{\"n\":3}\n")
	s := newSource(t, dir, 0, 1)
	if err := s.Open(testCtx{0, 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore([]byte(`{"file":"` + filepath.Join(dir, "a.jsonl") + `","offset":8}`)); err != nil {
		t.Fatal(err)
	}
	got, _ := drain(t, s)
	if strings.Join(got, " ") != `{"n":2} {"n":3}` {
		t.Fatalf("after restore: %v", got)
	}
	if err := s.Restore([]byte(`{"file":"/nope.jsonl","offset":0}`)); err == nil {
		t.Fatal("position of a file the subtask does not read accepted")
	}
}
