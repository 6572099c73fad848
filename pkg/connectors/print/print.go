// Package print is the `print` sink: it writes each record's value as one
// line on standard output, optionally prefixed ("<prefix>" and, with
// subtask_prefix, "<subtask>> " as Flink does). For debugging and demos.
package print

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name.
const Name = "print"

// Stdout is where print sinks write; tests may replace it before jobs start.
var Stdout io.Writer = os.Stdout

func init() { api.Default.MustRegister(Type()) }

// Type returns the print sink type (registered in api.Default).
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindSink,
		Doc: "Writes each record's value as a line on standard output.",
		Fields: []api.Field{
			{Name: "prefix", Type: api.TypeString, Default: "", Doc: "Text written before every line."},
			{Name: "subtask_prefix", Type: api.TypeBool, Default: false, Doc: "Prefix every line with \"<subtask>> \" (1-based, as Flink)."},
		},
		Example: "- id: out\n  type: print\n  inputs: [gen]\n  config:\n    prefix: 'gen: '\n",
		NewSink: func(cfg api.Config) (api.Sink, error) {
			return &Sink{prefix: cfg.String("prefix"), subtaskPrefix: cfg.Bool("subtask_prefix")}, nil
		},
	}
}

// Sink is one print subtask. Each record is written with one Write call on
// the shared writer, so lines of concurrent subtasks do not interleave.
type Sink struct {
	prefix        string
	subtaskPrefix bool
	w             io.Writer
	lead          []byte
	line          []byte
}

// Open implements api.Sink.
func (s *Sink) Open(ctx api.Context) error {
	s.w = Stdout
	if s.subtaskPrefix {
		s.lead = strconv.AppendInt(s.lead, int64(ctx.Info().SubtaskIndex+1), 10)
		s.lead = append(s.lead, "> "...)
	}
	s.lead = append(s.lead, s.prefix...)
	return nil
}

// Write implements api.Sink.
func (s *Sink) Write(r api.Record) error {
	s.line = append(append(append(s.line[:0], s.lead...), r.Value...), '\n')
	if _, err := s.w.Write(s.line); err != nil {
		return fmt.Errorf("print: write to stdout: %w", err)
	}
	return nil
}

// Finish implements api.Sink.
func (s *Sink) Finish() error {
	if f, ok := s.w.(*bufio.Writer); ok {
		return f.Flush()
	}
	return nil
}

// Close implements api.Sink.
func (s *Sink) Close() error { return nil }
