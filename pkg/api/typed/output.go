package typed

import (
	"bytes"
	"fmt"

	"github.com/flowrt/flow/pkg/api"
)

// OutputTypeName is the type that selects one output of a function with
// side outputs.
const OutputTypeName = "typed-output"

// A function with side outputs sends every record in an envelope naming
// its output, {"output":"<name>","value":<value>}; typed-output unwraps the
// values of one output without parsing them. The envelope is internal: the
// CheckJob hook lets only typed-output read such a function.
var envelopeStart = []byte(`{"output":`)

func envelopePrefix(name string) []byte {
	b := api.AppendJSONString(append([]byte(nil), envelopeStart...), []byte(name))
	return append(b, `,"value":`...)
}

// OutputType is the "typed-output" operator type: it passes the values of
// one output (config output: main, or a side output's name) of the typed
// function it reads, and drops the others. Register adds it.
func OutputType() api.OperatorType {
	return api.OperatorType{
		Name: OutputTypeName, Kind: api.KindOperator,
		Doc: "Selects one output (main or a side output) of a typed keyed process function with side outputs.",
		Fields: []api.Field{{Name: "output", Type: api.TypeString, Required: true,
			Doc: "The output to pass: main, or the name of a side output."}},
		Example: "- id: alerts\n  type: typed-output\n  inputs: [fraud]\n  config: {output: alerts}\n",
		NewOperator: func(cfg api.Config) (api.Operator, error) {
			return &selectOutput{name: cfg.String("output"), prefix: envelopePrefix(cfg.String("output"))}, nil
		},
	}
}

type selectOutput struct {
	name   string
	prefix []byte
}

func (s *selectOutput) Open(api.Context) error { return nil }

func (s *selectOutput) ProcessRecord(r api.Record, out api.Collector) error {
	v := r.Value
	if bytes.HasPrefix(v, s.prefix) && len(v) > len(s.prefix) && v[len(v)-1] == '}' {
		r.Value = v[len(s.prefix) : len(v)-1]
		out.Collect(r)
		return nil
	}
	if !bytes.HasPrefix(v, envelopeStart) {
		return fmt.Errorf("%s (output %q): record %.64q does not come from a typed function with side outputs: read such a function only", OutputTypeName, s.name, v)
	}
	return nil // another output's record
}

func (s *selectOutput) Finish(api.Collector) error { return nil }
func (s *selectOutput) Close() error               { return nil }
