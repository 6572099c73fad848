package jobmanager_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowrt/flow/internal/jobmanager"
	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// typeTestJM is a JobManager whose registry has the built-ins, a type of
// its own and one whose constructor panics.
func typeTestJM(t *testing.T) *jobmanager.JobManager {
	t.Helper()
	reg := api.Default.Clone()
	pass := func(api.Config) (api.Operator, error) { return nil, nil }
	reg.MustRegister(api.OperatorType{Name: "mine", Kind: api.KindOperator, NewOperator: pass})
	reg.MustRegister(api.OperatorType{Name: "boom", Kind: api.KindOperator,
		NewOperator: func(api.Config) (api.Operator, error) { panic("constructor bug") }})
	jm, err := jobmanager.New(jobmanager.Options{DataDir: t.TempDir(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jm.Close() })
	return jm
}

const specWith = `name: x
operators:
  - {id: gen, type: datagen}
  - {id: op, type: TYPE, inputs: [gen]}
  - {id: out, type: blackhole, inputs: [op]}
`

func TestValidateSpecUsesTheJobManagersTypes(t *testing.T) {
	jm := typeTestJM(t)
	ctx := context.Background()
	resp, err := jm.ValidateSpec(ctx, &clusterv1.ValidateSpecRequest{Spec: []byte(strings.Replace(specWith, "TYPE", "mine", 1)), Filename: "a.yaml"})
	if err != nil || len(resp.GetProblems()) != 0 || len(resp.GetGraph().GetVertices()) != 3 || resp.GetTasks() != 1 {
		t.Fatalf("valid spec: %v, %v", err, resp)
	}
	resp, err = jm.ValidateSpec(ctx, &clusterv1.ValidateSpecRequest{Spec: []byte(strings.Replace(specWith, "TYPE", "theirs", 1)), Filename: "a.yaml",
		Sets: []string{"operators.gen.parallelism=0"}})
	if err != nil || len(resp.GetProblems()) != 2 || resp.GetGraph() != nil ||
		!strings.HasPrefix(resp.GetProblems()[0], "a.yaml: --set operators.gen.parallelism=0:") ||
		!strings.HasPrefix(resp.GetProblems()[1], `a.yaml:4:20: operator "op": unknown type "theirs"`) {
		t.Fatalf("bad spec: %v, %q", err, resp.GetProblems())
	}
	// A panicking constructor is a problem of the spec, not a crash.
	resp, err = jm.ValidateSpec(ctx, &clusterv1.ValidateSpecRequest{Spec: []byte(strings.Replace(specWith, "TYPE", "boom", 1))})
	if err != nil || len(resp.GetProblems()) != 1 || !strings.Contains(resp.GetProblems()[0], "panicked: constructor bug") {
		t.Fatalf("panicking type: %v, %q", err, resp.GetProblems())
	}
	if _, err := jm.ValidateSpec(ctx, &clusterv1.ValidateSpecRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty request: %v", err)
	}

	types, err := jm.ListOperatorTypes(ctx, &clusterv1.ListOperatorTypesRequest{})
	names := map[string]bool{}
	for _, ty := range types.GetTypes() {
		names[ty.GetName()] = true
	}
	if err != nil || !names["mine"] || !names["datagen"] || len(types.GetTypes()) != len(api.Default.Types())+2 {
		t.Fatalf("ListOperatorTypes: %v, %v", err, names)
	}
}

func TestCheckSavepointErrors(t *testing.T) {
	jm := typeTestJM(t)
	ctx := context.Background()
	spec := []byte(strings.Replace(specWith, "TYPE", "mine", 1))
	missing := "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "no-such-savepoint"))
	_, err := jm.CheckSavepoint(ctx, &clusterv1.CheckSavepointRequest{Spec: spec, Path: missing})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "no-such-savepoint") {
		t.Fatalf("unreadable snapshot: %v", err)
	}
	if _, err := jm.CheckSavepoint(ctx, &clusterv1.CheckSavepointRequest{Spec: spec}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no path: %v", err)
	}
	resp, err := jm.CheckSavepoint(ctx, &clusterv1.CheckSavepointRequest{Spec: []byte("name: [\n"), Path: missing})
	if err != nil || len(resp.GetProblems()) != 1 || len(resp.GetReportJson()) != 0 {
		t.Fatalf("bad spec: %v, %v", err, resp)
	}
}
