// Package dedup is a user-defined operator type written against Flow's
// public Go SDK as a typed keyed process function (pkg/api/typed): it
// passes the first record of each key and drops the key's repeats for a
// time-to-live after it.
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
	"github.com/flowrt/flow/pkg/api/typed"
)

// Name is the type name jobs use (type: example-dedup).
const Name = "example-dedup"

// Type is the operator type to register: a typed keyed process function
// on the records' bytes as they are (typed.Bytes in and out), so the
// records it passes are exactly those it read.
func Type() api.OperatorType {
	return typed.MustType(typed.Definition[[]byte, []byte]{
		Name: Name,
		Doc:  "Passes the first record of each key and drops its repeats for ttl after it (ValueState with TTL). An example of a user-defined type.",
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
		Example: "- id: unique\n  type: example-dedup\n  inputs: [events]\n  keyBy: id\n  config: {ttl: 1h}\n",
		In:      typed.Bytes(), Out: typed.Bytes(),
		New: func(cfg api.Config) (typed.KeyedProcessFunction[[]byte, []byte], error) {
			return &Dedup{ttl: cfg.Duration("ttl")}, nil
		},
	})
}

// Dedup is one subtask's function.
type Dedup struct {
	typed.Base[[]byte] // no-op Finish and Close
	ttl                time.Duration
	seen               *api.ValueState[int64]
	dropped            prometheus.Counter
}

// Open declares the keyed state and the metric.
func (d *Dedup) Open(ctx api.Context) (err error) {
	// OnReadAndWrite: every repeat extends the key's life, so a key that
	// keeps coming is never passed twice.
	d.seen, err = typed.Value[int64](ctx, "seen", typed.WithTTL(api.TTLConfig{TTL: d.ttl, Update: api.OnReadAndWrite}))
	if err != nil {
		return err
	}
	d.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "example_dedup_dropped_total", Help: "Records dropped as repeats of a key seen within the TTL.",
	})
	return ctx.Metrics().Register(d.dropped)
}

// ProcessElement passes the record when its key is new (or expired).
func (d *Dedup) ProcessElement(ctx *typed.Context[[]byte], record []byte) error {
	n, err := d.seen.Value() // the state of ctx.CurrentKey()
	if err != nil {
		return err
	}
	if err := d.seen.Update(n + 1); err != nil {
		return err
	}
	if n > 0 {
		d.dropped.Inc()
		return nil
	}
	return ctx.Emit(record)
}
