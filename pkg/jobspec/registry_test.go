package jobspec

import (
	"errors"

	"github.com/flowrt/flow/pkg/api"
)

// testRegistry holds fake operator types covering every kind and field
// type, for the bad specs (testdata/bad). The parser builds each operator
// from its config once (as deploying does), so the constructors succeed;
// the instances are never run. The good specs (testdata/good) use the
// built-in types, because they must also deploy (goodspecs_test.go).
func testRegistry() *api.Registry {
	reg := api.NewRegistry()
	newSource := func(api.Config) (api.Source, error) { return nil, nil }
	newOp := func(api.Config) (api.Operator, error) { return nil, nil }
	newSink := func(api.Config) (api.Sink, error) { return nil, nil }
	reg.MustRegister(api.OperatorType{
		Name: "gen", Kind: api.KindSource, Doc: "generates records",
		Fields: []api.Field{
			{Name: "count", Type: api.TypeInt, Default: 1000, Validate: func(v any) error {
				if v.(int64) < 0 {
					return errors.New("must not be negative")
				}
				return nil
			}},
			{Name: "rate", Type: api.TypeFloat},
			{Name: "every", Type: api.TypeDuration, Default: "1ms"},
		},
		NewSource: newSource,
	})
	reg.MustRegister(api.OperatorType{
		Name: "filter", Kind: api.KindOperator,
		Fields:      []api.Field{{Name: "where", Type: api.TypeExpression, Required: true}},
		NewOperator: newOp,
	})
	reg.MustRegister(api.OperatorType{
		Name: "select", Kind: api.KindOperator,
		Fields:      []api.Field{{Name: "fields", Type: api.TypeStringMap, Required: true}},
		NewOperator: newOp,
	})
	reg.MustRegister(api.OperatorType{
		Name: "count", Kind: api.KindOperator, Keyed: true,
		Fields:      []api.Field{{Name: "emit", Type: api.TypeString, Default: "update", Enum: []string{"update", "final"}}},
		NewOperator: newOp,
	})
	reg.MustRegister(api.OperatorType{
		Name: "split", Kind: api.KindOperator, SideOutputs: []string{"late", "odd"},
		NewOperator: newOp,
	})
	reg.MustRegister(api.OperatorType{
		Name: "collect", Kind: api.KindSink,
		Fields: []api.Field{
			{Name: "path", Type: api.TypeString, Required: true},
			{Name: "fields", Type: api.TypeStringList},
		},
		NewSink: newSink,
	})
	return reg
}
