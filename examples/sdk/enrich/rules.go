package enrich

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/flowrt/flow/pkg/api"
)

// RulesName is the type name of the rules source (type: example-rules).
const RulesName = "example-rules"

// RulesType is a source that emits the JSON lines of a file once and then
// stays up without emitting, like a compacted topic of configuration that
// nobody writes to: it never ends, so checkpoints and savepoints go on
// after the rules are out. Once its lines are out it emits the final
// watermark, so downstream event time follows the other inputs.
func RulesType() api.OperatorType {
	return api.OperatorType{
		Name: RulesName, Kind: api.KindSource,
		Watermarks: true, // the final one, once the lines are out
		Doc:        "Emits the JSON lines of a file once, then stays up idle (a rules or configuration stream). An example of a user-defined source.",
		Fields:     []api.Field{{Name: "path", Type: api.TypeString, Required: true, Doc: "The file of JSON lines."}},
		Example:    "- id: rules\n  type: example-rules\n  parallelism: 1\n  config: {path: /data/rules.json}\n",
		NewSource: func(cfg api.Config) (api.Source, error) {
			return &Rules{path: cfg.String("path")}, nil
		},
	}
}

// Rules is the rules source; only subtask 0 reads the file.
type Rules struct {
	path  string
	lines [][]byte
	next  int  // lines emitted (the checkpointed position)
	final bool // the final watermark went out in this run
}

// Open reads the file.
func (s *Rules) Open(ctx api.Context) error {
	if ctx.Info().SubtaskIndex != 0 {
		return nil
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
			s.lines = append(s.lines, append([]byte(nil), l...))
		}
	}
	return sc.Err()
}

// Next emits the remaining lines, then the final watermark, then waits.
func (s *Rules) Next(out api.SourceOutput) (api.SourceStatus, error) {
	for ; s.next < len(s.lines); s.next++ {
		out.Collect(api.Record{Value: s.lines[s.next], Timestamp: api.NoTimestamp})
	}
	if !s.final {
		out.EmitWatermark(api.MaxWatermark)
		s.final = true
	}
	return api.SourceStatus{WaitUntil: time.Now().Add(time.Hour)}, nil
}

// Position is the number of lines emitted.
func (s *Rules) Position() ([]byte, error) { return strconv.AppendInt(nil, int64(s.next), 10), nil }

// Restore continues after the lines a checkpoint recorded as emitted.
func (s *Rules) Restore(p []byte) error {
	n, err := strconv.Atoi(string(p))
	if err != nil || n < 0 {
		return fmt.Errorf("rules: position %q: want a line count", p)
	}
	s.next = n
	return nil
}

// Close implements api.Source.
func (s *Rules) Close() error { return nil }
