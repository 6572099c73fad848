package api

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Side outputs are streams of an operator besides its main output (Flink's
// side outputs, e.g. late records). The operator type declares them
// (OperatorType.SideOutputs); a job reads each as an edge of its own (in a
// spec, `inputs: [op.late]`). Records collected into a side output reach
// only the edges that read it; the main output's edges never see them, and
// a side output nobody reads drops its records.

// ErrNoSideOutput is wrapped by SideOutputOf for a name the operator's type
// does not declare.
var ErrNoSideOutput = errors.New("no such side output")

// SideOutputContext is implemented by the Context of an operator whose
// type declares side outputs.
type SideOutputContext interface {
	// SideOutput returns the Collector of the declared side output name,
	// or nil when the type does not declare it.
	SideOutput(name string) Collector
}

// SideOutputOf returns the Collector of the operator's side output name,
// to keep from Open and use in ProcessRecord, OnTimer and the other calls
// on the task goroutine. It wraps ErrNoSideOutput for a name the type does
// not declare (or a context without side outputs).
func SideOutputOf(ctx Context, name string) (Collector, error) {
	if s, ok := ctx.(SideOutputContext); ok {
		if c := s.SideOutput(name); c != nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("operator %q: side output %q: %w: declare it in the type's SideOutputs", ctx.Info().OperatorID, name, ErrNoSideOutput)
}

func validSideOutputName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	})
}

// HasSideOutput reports whether t declares side output name.
func (t *OperatorType) HasSideOutput(name string) bool { return slices.Contains(t.SideOutputs, name) }
