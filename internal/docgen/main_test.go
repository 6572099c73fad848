package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
)

const committed = "../../docs/reference/operators.md"

// TestCommittedReferenceIsFresh fails when docs/reference/operators.md does
// not match the registry: regenerate it with
// go run ./internal/docgen > docs/reference/operators.md
func TestCommittedReferenceIsFresh(t *testing.T) {
	var buf bytes.Buffer
	if err := write(&buf, api.Default); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(committed)
	if err != nil {
		t.Fatalf("%v: generate it with go run ./internal/docgen > docs/reference/operators.md", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("%s is stale: regenerate it with go run ./internal/docgen > docs/reference/operators.md", committed)
	}
}

func TestWriteCoversEveryType(t *testing.T) {
	reg := api.NewRegistry()
	reg.MustRegister(api.OperatorType{
		Name: "k_count", Kind: api.KindOperator, Keyed: true, Doc: "Counts | things. More text.",
		Fields: []api.Field{
			{Name: "mode", Type: api.TypeString, Default: "a", Enum: []string{"a", "b"}, Doc: "How."},
			{Name: "path", Type: api.TypeString, Required: true},
		},
		Example:     "- id: c\n  type: k_count\n",
		SideOutputs: []string{"late"},
		NewOperator: func(api.Config) (api.Operator, error) { return nil, nil },
	})
	var buf bytes.Buffer
	if err := write(&buf, reg); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"| [`k_count`](#k_count) | operator | yes | Counts \\| things. |",
		"## k_count",
		"Keyed: the operator needs `keyBy`",
		"Side outputs: `late`, read as `inputs: [<id>.<side output>]`.",
		"| `mode` | `string` | no | `a` | How. One of: `a`, `b`. |",
		"| `path` | `string` | yes |  |  |",
		"```yaml\n- id: c\n  type: k_count\n```",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
