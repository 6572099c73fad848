package jobspec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// legacyGraph reads testdata/legacy/NAME.sections: the stateBackend,
// checkpoints and restart JSON that jobspec wrote into the graph's bytes
// fields for testdata/good/NAME.yaml before the typed fields existed
// (frozen: never regenerate).
func legacyGraph(t *testing.T, name string) *jobgraphv1.JobGraph {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/legacy", name+".sections"))
	if err != nil {
		t.Fatal(err)
	}
	g := &jobgraphv1.JobGraph{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		key, val, _ := strings.Cut(line, " ")
		switch key {
		case "stateBackend":
			g.StateBackend = []byte(val)
		case "checkpoints":
			g.Checkpoints = []byte(val)
		case "restart":
			g.Restart = []byte(val)
		default:
			t.Fatalf("%s.sections: unknown line %q", name, line)
		}
	}
	return g
}

// Every good spec's sections, as an older jobspec stored them (legacy
// JSON), resolve to exactly the configuration of the typed sections this
// jobspec writes for the same spec.
func TestLegacySectionsResolveLikeTypedOnes(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/good/*.yaml")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			typed, err := Parse(data, filepath.Base(f), api.Default, header(data))
			if err != nil {
				t.Fatal(err)
			}
			legacy := legacyGraph(t, name)
			for _, sec := range []struct {
				name string
				get  func(*jobgraphv1.JobGraph) (proto.Message, error)
			}{
				{"state backend", func(g *jobgraphv1.JobGraph) (proto.Message, error) { return g.EffectiveStateBackendConfig() }},
				{"checkpoints", func(g *jobgraphv1.JobGraph) (proto.Message, error) { return g.EffectiveCheckpointConfig() }},
				{"restart", func(g *jobgraphv1.JobGraph) (proto.Message, error) { return g.EffectiveRestartConfig() }},
			} {
				l, err := sec.get(legacy)
				if err != nil {
					t.Fatalf("legacy %s: %v", sec.name, err)
				}
				ty, err := sec.get(typed)
				if err != nil {
					t.Fatalf("typed %s: %v", sec.name, err)
				}
				if !proto.Equal(l, ty) {
					t.Errorf("%s: legacy resolves to %v, typed to %v", sec.name, renderConfig(l), renderConfig(ty))
				}
			}
			lck, err1 := CheckpointsOf(legacy)
			tck, err2 := CheckpointsOf(typed)
			if err1 != nil || err2 != nil || lck != tck {
				t.Errorf("CheckpointsOf: legacy %+v (%v), typed %+v (%v)", lck, err1, tck, err2)
			}
			lrs, err1 := RestartOf(legacy)
			trs, err2 := RestartOf(typed)
			if err1 != nil || err2 != nil || lrs != trs {
				t.Errorf("RestartOf: legacy %+v (%v), typed %+v (%v)", lrs, err1, trs, err2)
			}
		})
	}
}

// The graph inside the frozen v1 savepoint and checkpoint _metadata
// fixtures (written before the typed fields: legacy JSON, or no sections
// at all) still loads, with the configuration it was written with.
func TestOldCheckpointMetadataGraphLoads(t *testing.T) {
	for path, legacyJSON := range map[string]bool{
		"../checkpoint/savepoint/testdata/v1/_metadata": true,
		"../checkpoint/storage/testdata/v1/_metadata":   false,
	} {
		t.Run(path, func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			md, err := storage.DecodeMetadata(b)
			if err != nil {
				t.Fatal(err)
			}
			g := md.GetGraph()
			if g.GetCheckpointConfig() != nil || g.GetStateBackendConfig() != nil || g.GetRestartConfig() != nil {
				t.Fatalf("fixture %s has typed sections: it is no longer an old graph", path)
			}
			if has := len(g.GetCheckpoints()) > 0 && len(g.GetStateBackend()) > 0 && len(g.GetRestart()) > 0; has != legacyJSON {
				t.Fatalf("fixture %s: legacy JSON sections present %v, want %v", path, has, legacyJSON)
			}
			sb, err := StateBackendOf(g)
			if err != nil || sb != (StateBackend{Type: "heap"}) {
				t.Errorf("state backend %+v, %v; want heap", sb, err)
			}
			ck, err := CheckpointsOf(g)
			if want := defaultCheckpoints(); err != nil || ck != want || ck.Timeout != 10*time.Minute {
				t.Errorf("checkpoints %+v, %v; want %+v", ck, err, want)
			}
			rs, err := RestartOf(g)
			if err != nil || rs != (Restart{Strategy: RestartNone}) {
				t.Errorf("restart %+v, %v; want none", rs, err)
			}
		})
	}
}
