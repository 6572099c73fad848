package dedupe

import (
	"errors"
	"time"

	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name.
const Name = "dedupe"

func init() { api.Default.MustRegister(Type()) }

// Type returns the dedupe operator type.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc: "Passes the first record of each key and drops the key's records for ttl after it (keyed state with TTL).",
		Fields: []api.Field{
			{Name: "ttl", Type: api.TypeDuration, Required: true,
				Doc: "How long after a key's first record its duplicates are dropped (processing time), e.g. 10m.",
				Validate: func(v any) error {
					if v.(time.Duration) < time.Millisecond {
						return errors.New("ttl must be at least 1ms")
					}
					return nil
				}},
		},
		Example:     "- id: unique\n  type: dedupe\n  inputs: [gen]\n  keyBy: key\n  config:\n    ttl: 10m\n",
		NewOperator: func(cfg api.Config) (api.Operator, error) { return &Operator{ttl: cfg.Duration("ttl")}, nil },
	}
}

// Operator is the dedupe operator.
type Operator struct {
	ttl  time.Duration
	seen *api.ValueState[bool]
}

// Open declares the seen flag with TTL.
func (o *Operator) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	o.seen, err = api.GetValueState(store, api.ValueStateDescriptor[bool]{Name: "seen", Codec: api.BoolCodec(),
		TTL: &api.TTLConfig{TTL: o.ttl}})
	return err
}

// ProcessRecord passes r if its key was not seen within ttl.
func (o *Operator) ProcessRecord(r api.Record, out api.Collector) error {
	seen, err := o.seen.Value()
	if err != nil || seen {
		return err
	}
	if err := o.seen.Update(true); err != nil {
		return err
	}
	out.Collect(r)
	return nil
}

// Finish implements api.Operator.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
