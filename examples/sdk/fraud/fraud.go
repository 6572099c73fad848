// Package fraud is a fraud detector written against Flow's public Go SDK,
// the way Flink users write one with keyed state and TTL. Keyed by
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
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flowrt/flow/pkg/api"
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
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator, Keyed: true,
		Doc: "Alerts on transaction velocity and amount spikes per account (ValueState profile with a 90-day TTL, ListState of recent transactions with a 24-hour TTL). An example of a user-defined type.",
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
		NewOperator: func(cfg api.Config) (api.Operator, error) {
			return &Operator{rules: Rules{
				Window: cfg.Duration("velocityWindow").Milliseconds(), Limit: int(cfg.Int("velocityLimit")),
				SpikeFactor: cfg.Float("spikeFactor"), MinHistory: cfg.Int("minHistory"),
			}}, nil
		},
	}
}

// Rules are the detector's thresholds.
type Rules struct {
	Window      int64 // ms
	Limit       int
	SpikeFactor float64
	MinHistory  int64
}

// Operator is one subtask's instance.
type Operator struct {
	rules   Rules
	profile *api.ValueState[Profile]
	recent  *api.ListState[int64]
	buf     []byte
}

// Open declares the state.
func (o *Operator) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.profile, err = api.GetValueState(store, api.ValueStateDescriptor[Profile]{
		Name: "profile", Codec: api.JSON[Profile](), TTL: &api.TTLConfig{TTL: ProfileTTL},
	}); err != nil {
		return err
	}
	o.recent, err = api.GetListState(store, api.ListStateDescriptor[int64]{
		Name: "recent", Codec: api.Int64Codec(), TTL: &api.TTLConfig{TTL: RecentTTL},
	})
	return err
}

type transaction struct {
	Amount float64 `json:"value"`
}

// ProcessRecord applies both rules to one transaction of r's account.
func (o *Operator) ProcessRecord(r api.Record, out api.Collector) error {
	var tx transaction
	if err := json.Unmarshal(r.Value, &tx); err != nil {
		return fmt.Errorf("example-fraud: transaction %q: %w", r.Value, err)
	}
	ts := r.Timestamp
	if ts == api.NoTimestamp {
		return errors.New("example-fraud: the transaction has no event timestamp: give the source watermarks.timestamp")
	}
	recent, err := o.recent.Get()
	if err != nil {
		return err
	}
	kept := recent[:0]
	for _, t := range recent {
		if t > ts-o.rules.Window {
			kept = append(kept, t)
		}
	}
	kept = append(kept, ts)
	if err := o.recent.Update(kept); err != nil {
		return err
	}
	if len(kept) > o.rules.Limit {
		o.alert(out, r, "velocity", strconv.Itoa(len(kept)))
	}
	p, err := o.profile.Value()
	if err != nil {
		return err
	}
	if p.Count >= o.rules.MinHistory && tx.Amount > o.rules.SpikeFactor*p.Sum/float64(p.Count) {
		o.alert(out, r, "spike", strconv.FormatFloat(tx.Amount, 'f', -1, 64))
	}
	p.Count++
	p.Sum += tx.Amount
	return o.profile.Update(p)
}

func (o *Operator) alert(out api.Collector, r api.Record, kind, detail string) {
	b := append(o.buf[:0], `{"key":`...)
	b = api.AppendJSONString(b, r.Key)
	b = append(b, `,"kind":"`...)
	b = append(b, kind...)
	b = append(b, `","ts":`...)
	b = strconv.AppendInt(b, r.Timestamp, 10)
	b = append(b, `,"detail":"`...)
	b = append(b, detail...)
	b = append(b, `"}`...)
	o.buf = b
	out.Collect(api.Record{Key: r.Key, Value: b, Timestamp: r.Timestamp})
}

// Finish implements api.Operator: nothing is buffered.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
