package dedupe

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/operators/internal/ranked"
)

// Name is the registered type name.
const Name = "dedupe"

// ErrNaN: the orderBy expression gave NaN, which has no order.
var ErrNaN = errors.New("orderBy gave NaN, which has no order: make the expression give a number, e.g. with a default")

func init() { api.Default.MustRegister(Type()) }

// Type returns the dedupe operator type.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc: "Deduplicates per key, keeping the first or the last row (by arrival, or by an orderBy expression): passes a record when it becomes its key's kept row; a key is forgotten ttl after its kept row was last written (keyed state with TTL).",
		Fields: []api.Field{
			{Name: "ttl", Type: api.TypeDuration, Required: true,
				Doc: "How long after a key's kept row was written the key is forgotten (processing time), e.g. 10m; the key's next record then passes again.",
				Validate: func(v any) error {
					if v.(time.Duration) < time.Millisecond {
						return errors.New("ttl must be at least 1ms")
					}
					return nil
				}},
			{Name: "keep", Type: api.TypeString, Default: "first", Enum: []string{"first", "last"},
				Doc: "first: a key's first row (smallest orderBy) wins; last: its last row (largest orderBy) wins, each newer row passing as an update."},
			{Name: "orderBy", Type: api.TypeExpression,
				Doc: "Numeric expression that decides first and last, e.g. `dateTime`; ties go by the rows' bytes. Absent: arrival order."},
		},
		Example:     "- id: unique\n  type: dedupe\n  inputs: [gen]\n  keyBy: key\n  config:\n    ttl: 10m\n",
		NewOperator: New,
	}
}

// New builds the operator from a decoded config.
func New(cfg api.Config) (api.Operator, error) {
	o := &Operator{ttl: cfg.Duration("ttl"), last: cfg.String("keep") == "last"}
	if o.ttl < time.Millisecond {
		return nil, fmt.Errorf("dedupe: ttl %v is shorter than 1ms", o.ttl)
	}
	if src := cfg.String("orderBy"); src != "" {
		p, err := expression.Compile(src)
		if err != nil {
			return nil, fmt.Errorf("dedupe: orderBy: %w", err)
		}
		o.prog = p
	}
	return o, nil
}

// Operator is the dedupe operator.
type Operator struct {
	ttl  time.Duration
	last bool
	prog *expression.Program

	env  *expression.Env
	seen *api.ValueState[bool]         // arrival order, keep first
	kept *api.ValueState[ranked.Entry] // orderBy
}

// Open declares the key's state with TTL: a seen flag for first in arrival
// order, the kept row and its order value with orderBy; keep: last in
// arrival order keeps nothing (every record is its key's newest).
func (o *Operator) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	ttl := &api.TTLConfig{TTL: o.ttl}
	switch {
	case o.prog != nil:
		o.env = expression.NewEnv()
		o.kept, err = api.GetValueState(store, api.ValueStateDescriptor[ranked.Entry]{Name: "kept", Codec: ranked.EntryCodec{}, TTL: ttl})
	case !o.last:
		o.seen, err = api.GetValueState(store, api.ValueStateDescriptor[bool]{Name: "seen", Codec: api.BoolCodec(), TTL: ttl})
	}
	return err
}

// ProcessRecord passes r if it becomes its key's kept row.
func (o *Operator) ProcessRecord(r api.Record, out api.Collector) error {
	switch {
	case o.prog != nil:
		return o.ordered(r, out)
	case o.last:
		out.Collect(r)
		return nil
	}
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

// ordered keeps the row with the smallest (first) or largest (last)
// orderBy value.
func (o *Operator) ordered(r api.Record, out api.Collector) error {
	if err := o.env.Reset(r.Value, r.Timestamp, r.Key); err != nil {
		return err
	}
	v, err := o.prog.EvalNumber(o.env)
	if err != nil {
		return err
	}
	if math.IsNaN(v) {
		return fmt.Errorf("dedupe: %q: %w", o.prog.Source(), ErrNaN)
	}
	e := ranked.Entry{V: v, Row: r.Value}
	cur, ok, err := o.kept.Lookup()
	if err != nil {
		return err
	}
	// last: descending order, the newest first; first: ascending.
	if ok && !ranked.Before(e, cur, o.last) {
		return nil
	}
	if err := o.kept.Update(e); err != nil {
		return err
	}
	out.Collect(r)
	return nil
}

// Finish implements api.Operator.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
