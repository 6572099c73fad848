// Package dedup is a user-defined operator type written against Flow's
// public Go SDK: it passes the first record of each key and drops the
// key's repeats for a time-to-live after it.
//
// It keeps one ValueState[int64] per key ("seen": how many records of the
// key arrived within the TTL) with state TTL, so a key's state disappears
// on its own once the key goes quiet, and counts the records it dropped
// in a metric (example_dedup_dropped_total). Its state is checkpointed,
// restored after failures and redistributed on rescaling like that of
// any built-in operator, so its output is exactly once.
package dedup

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
)

// Name is the type name jobs use (type: example-dedup).
const Name = "example-dedup"

// Type is the operator type to register.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc: "Passes the first record of each key and drops its repeats for ttl after it (ValueState with TTL). An example of a user-defined type.",
		Fields: []api.Field{
			{Name: "ttl", Type: api.TypeDuration, Default: 24 * time.Hour,
				Doc: "How long a key is remembered after its last record (processing time).",
				Validate: func(v any) error {
					if v.(time.Duration) < time.Millisecond {
						return errors.New("ttl must be at least 1ms, e.g. 10m")
					}
					return nil
				}},
		},
		Example:     "- id: unique\n  type: example-dedup\n  inputs: [events]\n  keyBy: id\n  config: {ttl: 1h}\n",
		NewOperator: func(cfg api.Config) (api.Operator, error) { return &Operator{ttl: cfg.Duration("ttl")}, nil },
	}
}

// Operator is one subtask's instance.
type Operator struct {
	ttl     time.Duration
	seen    *api.ValueState[int64]
	dropped prometheus.Counter
}

// Open declares the keyed state and the metric.
func (o *Operator) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	// OnReadAndWrite: every repeat extends the key's life, so a key that
	// keeps coming is never passed twice.
	o.seen, err = api.GetValueState(store, api.ValueStateDescriptor[int64]{
		Name: "seen", Codec: api.Int64Codec(),
		TTL: &api.TTLConfig{TTL: o.ttl, Update: api.OnReadAndWrite},
	})
	if err != nil {
		return err
	}
	o.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "example_dedup_dropped_total", Help: "Records dropped as repeats of a key seen within the TTL.",
	})
	return ctx.Metrics().Register(o.dropped)
}

// ProcessRecord passes r when its key is new (or expired).
func (o *Operator) ProcessRecord(r api.Record, out api.Collector) error {
	n, err := o.seen.Value()
	if err != nil {
		return err
	}
	if err := o.seen.Update(n + 1); err != nil {
		return err
	}
	if n > 0 {
		o.dropped.Inc()
		return nil
	}
	out.Collect(r)
	return nil
}

// Finish implements api.Operator: nothing is buffered.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
