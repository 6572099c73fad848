package jobspec

import (
	"errors"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
)

// A config that passes every field check but that the operator's
// constructor refuses (a window sliding farther than its size) is a
// validation error, located at the operator, not a deploy failure.
func TestParseBuildsEachOperatorAsDeployWould(t *testing.T) {
	spec := `name: w
operators:
  - {id: gen, type: datagen}
  - id: win
    type: window
    inputs: [gen]
    keyBy: key
    config: {size: 1s, slide: 2s}
  - {id: out, type: blackhole, inputs: [win]}
`
	_, err := Parse([]byte(spec), "w.yaml", api.Default, nil)
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.List) != 1 {
		t.Fatalf("Parse: %v, want one error", err)
	}
	got := errs.Lines()[0]
	if want := `w.yaml:8:5: operator "win": config: window: slide 2000ms is larger than size 1000ms`; !strings.HasPrefix(got, want) {
		t.Fatalf("error %q\ndoes not start with %q", got, want)
	}
}
