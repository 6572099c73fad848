package jobgraph

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies pins the cut between planning and running: the plan,
// and the tools that only reason about a job (spec validation and
// `savepoint check`), link neither the task runtime nor the exchange, and
// the plan links no state backend. savepoint links Pebble on purpose:
// Inspect (and Check, through it) verifies native Pebble checkpoint files.
func TestDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	const mod = "github.com/flowrt/flow/"
	runtimeSide := []string{mod + "internal/runtime", mod + "internal/exchange", mod + "proto/flow/exchange/v1", mod + "pkg/barrier"}
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{mod + "pkg/jobgraph", append([]string{mod + "pkg/statebackend", mod + "pkg/checkpoint", "github.com/cockroachdb/pebble"}, runtimeSide...)},
		{mod + "pkg/jobspec", append([]string{mod + "pkg/statebackend", "github.com/cockroachdb/pebble"}, runtimeSide...)},
		{mod + "pkg/checkpoint/savepoint", runtimeSide},
	} {
		out, err := exec.Command(goTool, "list", "-deps", tc.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", tc.pkg, err, out)
		}
		deps := strings.Fields(string(out))
		for _, f := range tc.forbidden {
			for _, dep := range deps {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", tc.pkg, dep)
					break
				}
			}
		}
	}
}
