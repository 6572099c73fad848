package print

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
)

type testCtx struct{}

func (testCtx) Info() api.TaskInfo             { return api.TaskInfo{SubtaskIndex: 2, Parallelism: 3} }
func (testCtx) Logger() *slog.Logger           { return slog.New(slog.DiscardHandler) }
func (testCtx) Metrics() prometheus.Registerer { return prometheus.NewRegistry() }
func (testCtx) Clock() api.Clock               { return nil }
func (testCtx) Done() <-chan struct{}          { return nil }
func (testCtx) DataDir() string                { return "" }

func TestPrint(t *testing.T) {
	var buf bytes.Buffer
	old := Stdout
	Stdout = &buf
	defer func() { Stdout = old }()
	typ := Type()
	cfg, err := typ.DecodeConfig(map[string]any{"prefix": "p: ", "subtask_prefix": true})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := typ.NewSink(cfg)
	if err := s.Open(testCtx{}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{`{"a":1}`, `2`} {
		if err := s.Write(api.Record{Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "3> p: {\"a\":1}\n3> p: 2\n"; got != want {
		t.Fatalf("printed %q, want %q", got, want)
	}
}
