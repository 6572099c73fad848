package file

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
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
