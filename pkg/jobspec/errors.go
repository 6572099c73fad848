package jobspec

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalidSpec is wrapped by every *Errors, so callers can test for a
// spec problem with errors.Is.
var ErrInvalidSpec = errors.New("invalid job spec")

// Error is one problem in a job spec, located in the file.
type Error struct {
	File string
	// Line and Column are 1-based; 0 when unknown (Column 0 alone means only
	// the line is known).
	Line, Column int
	// Set is the --set override the problem comes from, if any.
	Set string
	// Msg says what is wrong and how to fix it.
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Set != "" {
		fmt.Fprintf(&b, "--set %s: ", e.Set)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a spec, in file order. Error joins them
// one per line.
type Errors struct {
	List []*Error
}

func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// Lines returns each problem as one line.
func (e *Errors) Lines() []string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return lines
}

// Is makes errors.Is(err, ErrInvalidSpec) true.
func (e *Errors) Is(target error) bool { return target == ErrInvalidSpec }

func (e *Errors) sort() {
	sort.SliceStable(e.List, func(i, j int) bool {
		a, b := e.List[i], e.List[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}
