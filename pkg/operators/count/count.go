package count

import (
	"strconv"

	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name.
const Name = "count"

func init() { api.Default.MustRegister(Type()) }

// Type returns the count operator type.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc:         "Counts records per key: emits {\"key\": k, \"count\": n} for every record, n being the key's running count (keyed state).",
		Example:     "- id: count\n  type: count\n  inputs: [gen]\n  keyBy: key\n",
		NewOperator: func(api.Config) (api.Operator, error) { return &Operator{}, nil },
	}
}

// Operator is the count operator.
type Operator struct {
	count *api.ValueState[int64]
	buf   []byte
}

// Open declares the count state.
func (o *Operator) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	o.count, err = api.GetValueState(store, api.ValueStateDescriptor[int64]{Name: "count", Codec: api.Int64Codec()})
	o.buf = make([]byte, 0, 64)
	return err
}

// ProcessRecord increments the key's count and emits it.
func (o *Operator) ProcessRecord(r api.Record, out api.Collector) error {
	n, err := o.count.Value()
	if err != nil {
		return err
	}
	n++
	if err := o.count.Update(n); err != nil {
		return err
	}
	b := append(o.buf[:0], `{"key":`...)
	b = api.AppendJSONString(b, r.Key)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, '}')
	o.buf = b
	out.Collect(api.Record{Key: r.Key, Value: b, Timestamp: r.Timestamp})
	return nil
}

// Finish implements api.Operator.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
