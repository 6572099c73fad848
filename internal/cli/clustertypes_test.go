package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/minicluster"
	"github.com/flowrt/flow/pkg/api"
)

// tagType is an operator type only the test cluster's registry has: a
// stock flowctl (api.Default) does not know it.
func tagType() api.OperatorType {
	return api.OperatorType{
		Name: "test-tag", Kind: api.KindOperator, Doc: "Passes records through. Only the test cluster has it.",
		Fields:      []api.Field{{Name: "label", Type: api.TypeString, Default: "x", Doc: "A label."}},
		NewOperator: func(api.Config) (api.Operator, error) { return passThrough{}, nil },
	}
}

type passThrough struct{}

func (passThrough) Open(api.Context) error                            { return nil }
func (passThrough) ProcessRecord(r api.Record, o api.Collector) error { o.Collect(r); return nil }
func (passThrough) Finish(api.Collector) error                        { return nil }
func (passThrough) Close() error                                      { return nil }

const taggedJob = `name: tagged
operators:
  - id: gen
    type: datagen
    config: {count: 500}
  - id: tag
    type: test-tag
    inputs: [gen]
    config: {label: LABEL}
  - id: out
    type: file
    inputs: [tag]
    config: {path: OUT}
`

// TestClusterOperatorTypes: validate, operators and run ask the
// JobManager, whose registry has a type flowctl's lacks; without a
// cluster (or with --local) flowctl uses its own with a note.
func TestClusterOperatorTypes(t *testing.T) {
	reg := api.NewRegistry()
	for _, ty := range api.Default.Types() {
		if err := reg.Register(*ty); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.Register(tagType()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 1, Slots: 2, DataDir: t.TempDir(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	env := map[string]string{EnvJobManager: c.JobManagerAddress()}
	out := t.TempDir()
	spec := writeSpec(t, strings.NewReplacer("OUT", out, "LABEL", "a").Replace(taggedJob))

	r := flowctl(t, env, "validate", spec)
	if r.code != 0 || r.stdout != "ok: 3 operators, 1 tasks after chaining\n" || r.stderr != "" {
		t.Fatalf("validate on the cluster: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// The cluster checks the config with the type's schema.
	bad := writeSpec(t, strings.NewReplacer("OUT", out, "LABEL", "[1]").Replace(taggedJob))
	r = flowctl(t, env, "validate", bad)
	if r.code != ExitUsage || !strings.Contains(r.stderr, bad+`:9:`) || !strings.Contains(r.stderr, `operator "tag": config field "label"`) {
		t.Fatalf("bad config on the cluster: exit %d, stderr %q", r.code, r.stderr)
	}
	r = flowctl(t, env, "validate", spec, "--local")
	if r.code != ExitUsage || !strings.Contains(r.stderr, `unknown type "test-tag"`) {
		t.Fatalf("validate --local: exit %d, stderr %q", r.code, r.stderr)
	}
	r = flowctl(t, nil, "validate", spec) // no cluster: flowctl's types, with a note
	if r.code != ExitUsage || !strings.Contains(r.stderr, "note: no JobManager answered at ") || !strings.Contains(r.stderr, `unknown type "test-tag"`) {
		t.Fatalf("validate without a cluster: exit %d, stderr %q", r.code, r.stderr)
	}

	r = flowctl(t, env, "operators")
	if r.code != 0 || !strings.Contains(r.stdout, "test-tag") || !strings.Contains(r.stdout, "datagen") {
		t.Fatalf("operators on the cluster: exit %d, stdout:\n%s\nstderr %q", r.code, r.stdout, r.stderr)
	}
	r = flowctl(t, env, "operators", "test-tag", "-o", "json")
	var ti typeInfo
	if err := json.Unmarshal([]byte(r.stdout), &ti); err != nil || ti.Kind != "operator" || len(ti.Fields) != 1 || ti.Fields[0].Default != "x" {
		t.Fatalf("operators test-tag -o json: %v, %+v (stderr %q)", err, ti, r.stderr)
	}
	r = flowctl(t, nil, "operators")
	if r.code != 0 || strings.Contains(r.stdout, "test-tag") || !strings.Contains(r.stderr, "note: no JobManager answered") {
		t.Fatalf("operators without a cluster: exit %d, stdout:\n%s\nstderr %q", r.code, r.stdout, r.stderr)
	}

	r = flowctl(t, env, "run", spec)
	if r.code != 0 || !strings.Contains(r.stdout, "FINISHED") {
		t.Fatalf("run: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if n := countLines(t, out); n != 500 {
		t.Errorf("the job wrote %d records, want 500", n)
	}
}

// TestTaskManagerLacksAType: the JobManager knows the type but its
// TaskManager does not (stock binaries beside a user's JobManager):
// validate passes and warns, naming the TaskManager and the type.
func TestTaskManagerLacksAType(t *testing.T) {
	reg := api.Default.Clone()
	reg.MustRegister(tagType())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 1, Slots: 2, DataDir: t.TempDir(), Registry: reg,
		TaskManagerRegistry: api.Default})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	env := map[string]string{EnvJobManager: c.JobManagerAddress()}
	spec := writeSpec(t, strings.NewReplacer("OUT", t.TempDir(), "LABEL", "a").Replace(taggedJob))
	r := flowctl(t, env, "validate", spec)
	want := `warning: TaskManager "tm-0" lacks operator type "test-tag": a task of it placed there fails: build every TaskManager with the JobManager's registry` + "\n"
	if r.code != 0 || r.stderr != want {
		t.Fatalf("validate: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
}
