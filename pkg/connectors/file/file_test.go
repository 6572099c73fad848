package file

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	run := func() {
		a := startAttempt(t, dir, attemptOpts{job: jobA, par: 2, maxSize: 40})
		before := len(committed(listing(t, dir)))
		a.write(1, recs("i", 0, 10)...)
		if c := committed(listing(t, dir)); len(c) != before {
			t.Fatalf("files committed before Finish: %v", slices.Sorted(maps.Keys(c)))
		}
		a.finish()
		a.close()
	}
	run()
	files := committed(listing(t, dir))
	if len(files) < 2 {
		t.Fatalf("max_file_size 40 should roll: %v", slices.Sorted(maps.Keys(files)))
	}
	for n := range files {
		if !regexp.MustCompile(`^part-aaaaaaaa-[0-9a-f]{8}-[0-9a-f]{8}-1-[0-9]+\.jsonl$`).MatchString(n) {
			t.Errorf("committed file %s: want part-aaaaaaaa-<op>-<run>-1-<n>.jsonl", n)
		}
	}
	exactlyOnce(t, dir, recs("i", 0, 10))
	if hidden, _ := filepath.Glob(filepath.Join(dir, ".*")); len(hidden) != 0 {
		t.Fatalf("in-progress files left: %v", hidden)
	}
	// A second run of the same job writes new files instead of overwriting.
	run()
	if got := len(committed(listing(t, dir))); got != 2*len(files) {
		t.Fatalf("%d files after the second run, want %d", got, 2*len(files))
	}
	keepsCommitted(t, dir, files)
}

var partRE = regexp.MustCompile(`^part-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9]+-[0-9]+\.jsonl$`)

// TestSinkTwoPhaseCommit walks the exactly-once protocol: records go to a
// hidden part, a snapshot makes it pending, the completion of its
// checkpoint commits it, and the end of input commits the rest.
func TestSinkTwoPhaseCommit(t *testing.T) {
	dir := t.TempDir()
	names := func() (hidden, visible int) {
		for n := range listing(t, dir) {
			if strings.HasPrefix(n, ".") {
				if !strings.HasSuffix(n, ".inprogress") || !partRE.MatchString(strings.TrimSuffix(n[1:], ".inprogress")) {
					t.Errorf("uncommitted file %s: want .part-...jsonl.inprogress", n)
				}
				hidden++
			} else {
				visible++
			}
		}
		return hidden, visible
	}
	a := startAttempt(t, dir, attemptOpts{job: jobA, par: 1})
	a.write(0, `"a"`)
	if h, v := names(); h != 1 || v != 0 {
		t.Fatalf("after a record: %d hidden, %d committed files", h, v)
	}
	a.snapshot(1)
	a.write(0, `"b"`)
	a.snapshot(2)
	if h, v := names(); h != 2 || v != 0 {
		t.Fatalf("after snapshots 1 and 2: %d hidden, %d committed files", h, v)
	}
	a.notify(1)
	exactlyOnce(t, dir, []string{`"a"`})
	a.write(0, `"c"`)
	a.finish()
	a.close()
	if h, v := names(); h != 0 || v != 3 {
		t.Fatalf("after finish: %d hidden, %d committed files", h, v)
	}
	exactlyOnce(t, dir, []string{`"a"`, `"b"`, `"c"`})
}

// TestSinkRestoresFormat1State: a checkpoint taken before part names had
// a job and run (format 1, parts part-<subtask>-<n>.jsonl) still restores:
// its pending part is committed; what the old sink wrote after it is left
// alone (it cannot be told apart from other runs' files).
func TestSinkRestoresFormat1State(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "part-0-0.jsonl"), "\"a\"\n")
	write(t, filepath.Join(dir, ".part-0-1.jsonl.inprogress"), "\"b\"\n")
	write(t, filepath.Join(dir, ".part-0-2.jsonl.inprogress"), "\"late\"\n")
	elem := []byte(`{"subtask":0,"next":2,"pending":[{"part":1,"checkpoint":4}]}`)
	ck := [][]statebackend.OperatorState{{{Spec: api.OperatorStateSpec{Name: stateName, Mode: api.UnionList, ValueCodec: api.BytesCodec().ID()}, Items: [][]byte{elem}}}}
	b := startAttempt(t, dir, attemptOpts{job: jobB, par: 1, restore: ck})
	b.write(0, `"c"`)
	b.snapshot(5)
	b.notify(5)
	b.finish()
	b.close()
	exactlyOnce(t, dir, []string{`"a"`, `"b"`, `"c"`})
	if _, err := os.Stat(filepath.Join(dir, ".part-0-2.jsonl.inprogress")); err != nil {
		t.Errorf("the format-1 in-progress part: %v, want it left alone", err)
	}
	bad := [][]statebackend.OperatorState{{{Spec: ck[0][0].Spec, Items: [][]byte{[]byte(`{"v":9}`)}}}}
	shares, err := statebackend.Redistribute(bad, 1)
	if err != nil {
		t.Fatal(err)
	}
	store := statebackend.NewOperatorStore()
	if err := store.Restore(shares[0]); err != nil {
		t.Fatal(err)
	}
	s := &Sink{dir: dir}
	if err := s.Open(jobCtx{api.TaskInfo{JobID: jobB, Parallelism: 1}, store}); err != nil {
		t.Fatal(err)
	}
	if err := s.InitializeState(true); err == nil || !strings.Contains(err.Error(), "format 9") {
		t.Fatalf("state of a future format: %v", err)
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
