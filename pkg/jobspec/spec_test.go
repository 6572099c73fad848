package jobspec

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/jobgraph"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/good/*.golden and testdata/bad/*.err")

// header reads the "# set: k=v" comments at the top of a testdata file.
// Each bad file's expected error lines are in the sibling .err file.
func header(data []byte) (sets []string) {
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "# set: "):
			// $FLOW_TESTDATA_KAFKA: the test broker's address (TestMain).
			sets = append(sets, strings.ReplaceAll(strings.TrimPrefix(line, "# set: "), "$FLOW_TESTDATA_KAFKA", os.Getenv("FLOW_TESTDATA_KAFKA")))
		case strings.HasPrefix(line, "#"):
		default:
			return sets
		}
	}
	return sets
}

// render prints a graph compactly and deterministically for golden files.
func render(t *testing.T, g *jobgraphv1.JobGraph) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "job %q parallelism=%d maxParallelism=%d\n", g.GetName(), g.GetParallelism(), g.GetMaxParallelism())
	for _, v := range g.GetVertices() {
		fmt.Fprintf(&b, "vertex %s type=%s kind=%s uid=%s parallelism=%d onError=%s", v.GetId(), v.GetType(),
			strings.TrimPrefix(v.GetKind().String(), "VERTEX_KIND_"), v.GetUid(), v.GetParallelism(), v.GetOnError())
		if v.GetKeyBy() != "" {
			fmt.Fprintf(&b, " keyBy=%q", v.GetKeyBy())
		}
		if w := v.GetWatermarks(); w != nil {
			fmt.Fprintf(&b, " watermarks={timestamp=%q outOfOrderness=%dms interval=%dms idleTimeout=%dms}",
				w.GetTimestamp(), w.GetOutOfOrdernessMs(), w.GetIntervalMs(), w.GetIdleTimeoutMs())
		}
		cfg := string(v.GetConfig())
		if addr := os.Getenv("FLOW_TESTDATA_KAFKA"); addr != "" {
			cfg = strings.ReplaceAll(cfg, addr, "$FLOW_TESTDATA_KAFKA")
		}
		fmt.Fprintf(&b, "\n  config %s\n", cfg)
	}
	for _, e := range g.GetEdges() {
		fmt.Fprintf(&b, "edge %s -> %s %s", e.GetSource(), e.GetTarget(), strings.TrimPrefix(e.GetPartitioning().String(), "PARTITIONING_"))
		if e.GetKeyBy() != "" {
			fmt.Fprintf(&b, " keyBy=%q", e.GetKeyBy())
		}
		if e.GetInput() != 0 {
			fmt.Fprintf(&b, " input=%d", e.GetInput())
		}
		if e.GetSideOutput() != "" {
			fmt.Fprintf(&b, " sideOutput=%s", e.GetSideOutput())
		}
		b.WriteString("\n")
	}
	if len(g.GetStateBackend())+len(g.GetCheckpoints())+len(g.GetRestart()) > 0 {
		t.Errorf("the graph carries legacy JSON sections: %q %q %q", g.GetStateBackend(), g.GetCheckpoints(), g.GetRestart())
	}
	fmt.Fprintf(&b, "stateBackend %s\ncheckpoints %s\nrestart %s\n", renderConfig(g.GetStateBackendConfig()),
		renderConfig(g.GetCheckpointConfig()), renderConfig(g.GetRestartConfig()))
	plan, err := jobgraph.BuildPlan(g)
	if err != nil {
		t.Fatalf("BuildPlan: %v", err)
	}
	for _, task := range plan.Tasks {
		fmt.Fprintf(&b, "task %s parallelism=%d operators=%s\n", task.ID, task.Parallelism, strings.Join(task.Operators, ","))
	}
	return b.String()
}

// TestGoodSpecs parses every good spec with the built-in operator types
// (the ones TestGoodSpecsDeploy runs on a mini cluster) and compares the
// graph with its golden file.
func TestGoodSpecs(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/good/*.yaml")
	}
	reg := api.Default
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sets := header(data)
			g, err := Parse(data, filepath.Base(f), reg, sets)
			if err != nil {
				t.Fatalf("Parse:\n%v", err)
			}
			if g.GetSpec() != string(data) {
				t.Error("graph does not keep the spec text")
			}
			got := render(t, g)
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("graph differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestBadSpecs(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/bad/*.yaml")
	}
	reg := testRegistry()
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sets := header(data)
			errFile := strings.TrimSuffix(f, ".yaml") + ".err"
			g, err := Parse(data, filepath.Base(f), reg, sets)
			if err == nil {
				t.Fatalf("Parse succeeded with %d vertices; want errors", len(g.GetVertices()))
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error does not wrap ErrInvalidSpec: %v", err)
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *Errors", err)
			}
			got := errs.Lines()
			if *update {
				if err := os.WriteFile(errFile, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantData, err := os.ReadFile(errFile)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			want := strings.Split(strings.TrimSuffix(string(wantData), "\n"), "\n")
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("errors differ:\n--- got\n%s\n--- want\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if errs.Error() != strings.Join(got, "\n") {
				t.Error("Error() does not join the lines")
			}
		})
	}
}

// renderConfig prints the set fields of a typed job-level section in field
// order (durations as Go durations), deterministically, unlike prototext.
func renderConfig(m proto.Message) string {
	if m == nil || !m.ProtoReflect().IsValid() {
		return "<unset>"
	}
	r := m.ProtoReflect()
	var parts []string
	fields := r.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if !r.Has(f) {
			continue
		}
		v := r.Get(f)
		var s string
		switch {
		case f.Message() != nil && f.Message().FullName() == "google.protobuf.Duration":
			s = v.Message().Interface().(*durationpb.Duration).AsDuration().String()
		case f.Enum() != nil:
			s = string(f.Enum().Values().ByNumber(v.Enum()).Name())
		default:
			s = fmt.Sprint(v.Interface())
		}
		parts = append(parts, string(f.Name())+"="+s)
	}
	return "{" + strings.Join(parts, " ") + "}"
}
