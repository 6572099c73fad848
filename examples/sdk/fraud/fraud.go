// Package fraud is a fraud detector written against Flow's public Go SDK
// as a typed keyed process function (pkg/api/typed), the way Flink users
// write one with keyed state and TTL. Keyed by
// account, it reads transactions {"key": account, "value": amount} with
// event timestamps and emits an alert when
//
//   - velocity: more than velocityLimit transactions of the account fall
//     within velocityWindow of event time, ending at this one;
//   - spike: the amount is above spikeFactor times the account's average,
//     once the account has minHistory transactions.
//
// State per account: a ValueState profile (count and sum of amounts) with
// a 90-day TTL, so dormant accounts are forgotten, and a ListState of the
// recent transactions' timestamps with a 24-hour TTL, pruned to the
// velocity window on every transaction. Both are checkpointed, restored and
// rescaled by Flow, so alerts are exactly once.
package fraud

import (
	"errors"
	"strconv"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/typed"
)

// Name is the type name jobs use (type: example-fraud).
const Name = "example-fraud"

// Profile is an account's history.
type Profile struct {
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
}

// TTLs of the state.
const (
	ProfileTTL = 90 * 24 * time.Hour
	RecentTTL  = 24 * time.Hour
)

// Type is the operator type to register.
func Type() api.OperatorType {
	positive := func(v any) error {
		switch x := v.(type) {
		case int64:
			if x < 1 {
				return errors.New("must be at least 1")
			}
		case float64:
			if x <= 1 {
				return errors.New("must be above 1")
			}
		case time.Duration:
			if x < time.Millisecond {
				return errors.New("must be at least 1ms")
			}
		}
		return nil
	}
	return typed.MustType(typed.Definition[Transaction, Alert]{
		Name: Name,
		Doc:  "Alerts on transaction velocity and amount spikes per account (ValueState profile with a 90-day TTL, ListState of recent transactions with a 24-hour TTL). An example of a user-defined type.",
		Fields: []api.Field{
			{Name: "velocityWindow", Type: api.TypeDuration, Default: time.Minute, Validate: positive,
				Doc: "Event-time window the velocity rule counts transactions in."},
			{Name: "velocityLimit", Type: api.TypeInt, Default: int64(5), Validate: positive,
				Doc: "Alert when more transactions than this fall in the window."},
			{Name: "spikeFactor", Type: api.TypeFloat, Default: 3.0, Validate: positive,
				Doc: "Alert when an amount exceeds this many times the account's average."},
			{Name: "minHistory", Type: api.TypeInt, Default: int64(5), Validate: positive,
				Doc: "Transactions an account needs before the spike rule applies."},
		},
		Example: "- id: fraud\n  type: example-fraud\n  inputs: [transactions]\n  keyBy: key\n  config: {velocityWindow: 1m, velocityLimit: 5}\n",
		New: func(cfg api.Config) (typed.KeyedProcessFunction[Transaction, Alert], error) {
			return &Detector{rules: Rules{
				Window: cfg.Duration("velocityWindow").Milliseconds(), Limit: int(cfg.Int("velocityLimit")),
				SpikeFactor: cfg.Float("spikeFactor"), MinHistory: cfg.Int("minHistory"),
			}}, nil
		},
	})
}

// Rules are the detector's thresholds.
type Rules struct {
	Window      int64 // ms
	Limit       int
	SpikeFactor float64
	MinHistory  int64
}

// Transaction is an input record (datagen's {"key": account, "value":
// amount}; the key is the record's key).
type Transaction struct {
	Amount float64 `json:"value"`
}

// Alert is an output record.
type Alert struct {
	Key    string `json:"key"`
	Kind   string `json:"kind"` // velocity or spike
	TS     int64  `json:"ts"`
	Detail string `json:"detail"`
}

// Detector is one subtask's function.
type Detector struct {
	typed.Base[Alert] // no-op Finish and Close
	rules             Rules
	profile           *api.ValueState[Profile]
	recent            *api.ListState[int64]
	kept              []int64
}

// Open declares the state.
func (d *Detector) Open(ctx api.Context) (err error) {
	if d.profile, err = typed.Value[Profile](ctx, "profile", typed.TTL(ProfileTTL)); err != nil {
		return err
	}
	d.recent, err = typed.List[int64](ctx, "recent", typed.TTL(RecentTTL))
	return err
}

// ProcessElement applies both rules to one transaction of the current
// account.
func (d *Detector) ProcessElement(ctx *typed.Context[Alert], tx Transaction) error {
	ts := ctx.Timestamp()
	if ts == api.NoTimestamp {
		return errors.New("example-fraud: the transaction has no event timestamp: give the source watermarks.timestamp")
	}
	kept := d.kept[:0]
	if err := d.recent.Range(func(t int64) bool {
		if t > ts-d.rules.Window {
			kept = append(kept, t)
		}
		return true
	}); err != nil {
		return err
	}
	kept = append(kept, ts)
	d.kept = kept
	if err := d.recent.Update(kept); err != nil {
		return err
	}
	if len(kept) > d.rules.Limit {
		if err := d.alert(ctx, "velocity", strconv.Itoa(len(kept))); err != nil {
			return err
		}
	}
	p, err := d.profile.Value()
	if err != nil {
		return err
	}
	if p.Count >= d.rules.MinHistory && tx.Amount > d.rules.SpikeFactor*p.Sum/float64(p.Count) {
		if err := d.alert(ctx, "spike", strconv.FormatFloat(tx.Amount, 'f', -1, 64)); err != nil {
			return err
		}
	}
	p.Count++
	p.Sum += tx.Amount
	return d.profile.Update(p)
}

func (d *Detector) alert(ctx *typed.Context[Alert], kind, detail string) error {
	return ctx.Emit(Alert{Key: string(ctx.CurrentKey()), Kind: kind, TS: ctx.Timestamp(), Detail: detail})
}
