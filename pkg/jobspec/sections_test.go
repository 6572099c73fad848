package jobspec

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flowrt/flow/pkg/api"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

func TestSectionsRoundTrip(t *testing.T) {
	g, err := LoadFile("testdata/good/keyed-count.yaml", api.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := StateBackendOf(g)
	if err != nil {
		t.Fatal(err)
	}
	if want := (StateBackend{Type: "pebble", BlockCacheSize: 64 << 20, MemtableSize: 4 << 20, Compression: "zstd"}); sb != want {
		t.Errorf("state backend %+v, want %+v", sb, want)
	}
	ck, err := CheckpointsOf(g)
	if err != nil {
		t.Fatal(err)
	}
	wantCk := Checkpoints{Interval: time.Second, Mode: ModeExactlyOnce, Unaligned: true, AlignedTimeout: 100 * time.Millisecond,
		Timeout: time.Minute, MinPause: 500 * time.Millisecond, MaxConcurrent: 2, TolerableFailures: 0,
		Storage: "s3://bucket/flow", Retain: 3, Incremental: true, RetainOnCancel: true}
	if ck != wantCk {
		t.Errorf("checkpoints %+v, want %+v", ck, wantCk)
	}
	rs, err := RestartOf(g)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Restart{Strategy: RestartFailureRate, MaxFailuresPerInterval: 3, FailureRateInterval: 5 * time.Minute, Delay: 10 * time.Second}); rs != want {
		t.Errorf("restart %+v, want %+v", rs, want)
	}

	// A graph without the sections gives the defaults.
	empty := &jobgraphv1.JobGraph{}
	if sb, _ := StateBackendOf(empty); sb.Type != "heap" {
		t.Errorf("default backend %+v", sb)
	}
	if ck, _ := CheckpointsOf(empty); !reflect.DeepEqual(ck, defaultCheckpoints()) || ck.Timeout != 10*time.Minute {
		t.Errorf("default checkpoints %+v", ck)
	}
	if rs, _ := RestartOf(empty); rs.Strategy != RestartNone {
		t.Errorf("default restart %+v", rs)
	}
	if _, err := CheckpointsOf(&jobgraphv1.JobGraph{Checkpoints: []byte("{")}); !errors.Is(err, jobgraphv1.ErrInvalidConfig) {
		t.Errorf("CheckpointsOf a broken legacy section: %v, want ErrInvalidConfig", err)
	}
	if r := DefaultRestart(true); r.Strategy != RestartFixedDelay || r.Attempts != math.MaxInt32 || r.Delay != time.Second {
		t.Errorf("DefaultRestart(true) = %+v", r)
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "nope.yaml"), testRegistry(), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"64MiB": 64 << 20, "1GB": 1e9, "512 KiB": 512 << 10, "100": 100, "2g": 2 << 30, "10B": 10} {
		p := &parser{file: "x"}
		n := mustScalar(t, in)
		got, ok := p.size(entry{val: n}, "size")
		if !ok || got != want {
			t.Errorf("size(%q) = %d, %v (errors %v); want %d", in, got, ok, p.errs.Lines(), want)
		}
	}
}

// FuzzParse checks that no input makes Parse panic and that a failure is
// always an *Errors with located lines.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, "operators.src.parallelism=3")
		}
	}
	reg := api.Default // Parse builds every operator: fuzz the built-in constructors too
	f.Fuzz(func(t *testing.T, data []byte, set string) {
		_, err := Parse(data, "f.yaml", reg, []string{set})
		if err == nil {
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(errs.List) == 0 {
			t.Fatalf("error %v is not a non-empty *Errors", err)
		}
	})
}

func mustScalar(t *testing.T, s string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}
