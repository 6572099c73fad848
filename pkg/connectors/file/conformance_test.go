package file

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flow/internal/sinktest"
	"github.com/flowrt/flow/pkg/api"
)

type fileEnv struct{ dir string }

func (e fileEnv) NewSink(t *testing.T) api.Sink {
	t.Helper()
	typ := SinkType()
	cfg, err := typ.DecodeConfig(map[string]any{"path": e.dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := typ.NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Committed reads the lines of the committed part files (a reader never
// opens the hidden in-progress and pending ones).
func (e fileEnv) Committed(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), ".") || !strings.HasSuffix(ent.Name(), ".jsonl") {
			continue
		}
		f, err := os.Open(filepath.Join(e.dir, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			out = append(out, sc.Text())
		}
		f.Close()
	}
	return out
}

// TestExactlyOnceConformance runs the exactly-once sink suite (shared with
// the kafka sink) against the file sink.
func TestExactlyOnceConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Env { return fileEnv{dir: t.TempDir()} })
}
