package reduce

import (
	"fmt"
	"math"
	"strconv"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name.
const Name = "reduce"

// Functions are the aggregate functions of the fn field.
var Functions = []string{"sum", "min", "max", "avg"}

// ErrNotNumber is wrapped when the field expression does not give a number.
var ErrNotNumber = expression.ErrNotNumber

func init() { api.Default.MustRegister(Type()) }

// Type returns the reduce operator type.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc: "Running sum, min, max or average of a numeric expression per key: emits {\"key\": k, \"<fn>\": v} for every record (keyed state).",
		Fields: []api.Field{
			{Name: "field", Type: api.TypeExpression, Required: true,
				Doc: "Numeric expression over the record's fields, e.g. `value` or `price * qty`."},
			{Name: "fn", Type: api.TypeString, Default: "sum", Enum: Functions,
				Doc: "Aggregate function: sum, min, max or avg."},
		},
		Example:     "- id: total\n  type: reduce\n  inputs: [gen]\n  keyBy: key\n  config:\n    field: value\n    fn: sum\n",
		NewOperator: New,
	}
}

// New builds the operator from a decoded config.
func New(cfg api.Config) (api.Operator, error) {
	prog, err := expression.Compile(cfg.String("field"))
	if err != nil {
		return nil, fmt.Errorf("reduce: field: %w", err)
	}
	fn := cfg.String("fn")
	if fn == "" {
		fn = "sum"
	}
	o := &Operator{prog: prog, fn: fn}
	switch fn {
	case "sum":
		o.fold = func(a, v float64) float64 { return a + v }
	case "min":
		o.fold = math.Min
	case "max":
		o.fold = math.Max
	case "avg":
	default:
		return nil, fmt.Errorf("reduce: fn %q is unknown: use sum, min, max or avg", fn)
	}
	return o, nil
}

// avgAcc is the accumulator of avg.
type avgAcc struct {
	Sum   float64 `json:"s"`
	Count int64   `json:"n"`
}

// Operator is the reduce operator.
type Operator struct {
	prog *expression.Program
	env  *expression.Env
	fn   string
	fold func(acc, v float64) float64
	acc  *api.ValueState[float64]
	avg  *api.ValueState[avgAcc]
	buf  []byte
}

// Open declares the aggregate state.
func (o *Operator) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	o.env = expression.NewEnv()
	o.buf = make([]byte, 0, 64)
	if o.fn == "avg" {
		o.avg, err = api.GetValueState(store, api.ValueStateDescriptor[avgAcc]{Name: "acc", Codec: &api.JSONCodec[avgAcc]{Name: "reduce-avg"}})
		return err
	}
	o.acc, err = api.GetValueState(store, api.ValueStateDescriptor[float64]{Name: "acc", Codec: api.Float64Codec()})
	return err
}

// value evaluates the field expression on r.
func (o *Operator) value(r api.Record) (float64, error) {
	if err := o.env.Reset(r.Value, r.Timestamp, r.Key); err != nil {
		return 0, err
	}
	return o.prog.EvalNumber(o.env)
}

// ProcessRecord folds the record's value into its key's aggregate and
// emits the aggregate.
func (o *Operator) ProcessRecord(r api.Record, out api.Collector) error {
	v, err := o.value(r)
	if err != nil {
		return err
	}
	var res float64
	if o.avg != nil {
		a, err := o.avg.Value()
		if err != nil {
			return err
		}
		a.Sum += v
		a.Count++
		if err := o.avg.Update(a); err != nil {
			return err
		}
		res = a.Sum / float64(a.Count)
	} else {
		a, ok, err := o.acc.Lookup()
		if err != nil {
			return err
		}
		if ok {
			v = o.fold(a, v)
		}
		if err := o.acc.Update(v); err != nil {
			return err
		}
		res = v
	}
	if math.IsInf(res, 0) || math.IsNaN(res) {
		return fmt.Errorf("reduce %s of key %q is %v, which JSON cannot hold", o.fn, r.Key, res)
	}
	b := append(o.buf[:0], `{"key":`...)
	b = api.AppendJSONString(b, r.Key)
	b = append(b, ',', '"')
	b = append(b, o.fn...)
	b = append(b, '"', ':')
	b = strconv.AppendFloat(b, res, 'f', -1, 64)
	b = append(b, '}')
	o.buf = b
	out.Collect(api.Record{Key: r.Key, Value: b, Timestamp: r.Timestamp})
	return nil
}

// Finish implements api.Operator.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
