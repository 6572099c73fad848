package enrich

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/typed"
)

// RulesName is the type name of the rules source (type: example-rules).
const RulesName = "example-rules"

// RulesType is a source that emits the JSON lines of a file once and then
// stays up without emitting, like a compacted topic of configuration that
// nobody writes to: it never ends, so checkpoints and savepoints go on
// after the rules are out. Once its lines are out it emits the final
// watermark, so downstream event time follows the other inputs.
//
// It is a typed source (typed.SourceFunction): its one split is the file
// with the number of lines already emitted, which checkpoints store, so a
// restore continues after the last rule emitted, at any parallelism.
func RulesType() api.OperatorType {
	return typed.MustSourceType(typed.SourceDefinition[json.RawMessage, RulesSplit]{
		Name:       RulesName,
		Watermarks: true, // the final one, once the lines are out
		Doc:        "Emits the JSON lines of a file once, then stays up idle (a rules or configuration stream). An example of a user-defined source.",
		Fields:     []api.Field{{Name: "path", Type: api.TypeString, Required: true, Doc: "The file of JSON lines."}},
		Example:    "- id: rules\n  type: example-rules\n  parallelism: 1\n  config: {path: /data/rules.json}\n",
		New: func(cfg api.Config) (typed.SourceFunction[json.RawMessage, RulesSplit], error) {
			return &Rules{path: cfg.String("path")}, nil
		},
	})
}

// RulesSplit is the source's progress: the lines of Path emitted so far.
type RulesSplit struct {
	Path    string `json:"path"`
	Emitted int    `json:"emitted"`
}

// Rules is the rules source. Subtask 0 of a fresh start owns the file's
// one split; after a restore, whichever subtask is handed the split.
type Rules struct {
	typed.SourceBase
	path   string
	splits []RulesSplit
	lines  [][]byte // the file's lines, read on the first Next with a split
	final  bool     // the final watermark went out in this run
}

// Open chooses the split of a fresh start.
func (s *Rules) Open(ctx api.Context) error {
	if ctx.Info().SubtaskIndex == 0 {
		s.splits = []RulesSplit{{Path: s.path}}
	}
	return nil
}

// Next emits the remaining lines, then the final watermark, then waits.
func (s *Rules) Next(out *typed.SourceContext[json.RawMessage]) (api.SourceStatus, error) {
	for i := range s.splits {
		sp := &s.splits[i]
		if s.lines == nil {
			lines, err := readLines(sp.Path)
			if err != nil {
				return api.SourceStatus{}, err
			}
			s.lines = lines
		}
		for ; sp.Emitted < len(s.lines); sp.Emitted++ {
			if err := out.Emit(s.lines[sp.Emitted]); err != nil {
				return api.SourceStatus{}, err
			}
		}
	}
	if !s.final {
		out.EmitWatermark(api.MaxWatermark)
		s.final = true
	}
	return api.SourceStatus{WaitUntil: time.Now().Add(time.Hour)}, nil
}

// Splits is the split with the lines emitted (what a checkpoint stores).
func (s *Rules) Splits() ([]RulesSplit, error) { return slices.Clone(s.splits), nil }

// RestoreSplits continues after the lines a checkpoint recorded.
func (s *Rules) RestoreSplits(splits []RulesSplit) error {
	s.splits = splits
	return nil
}

func readLines(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	lines := [][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
			lines = append(lines, append([]byte(nil), l...))
		}
	}
	return lines, sc.Err()
}
