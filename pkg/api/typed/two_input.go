package typed

import (
	"fmt"

	"github.com/flowrt/flow/pkg/api"
)

// KeyedCoProcessFunction is user logic on two keyed streams connected by
// one key (Flink's KeyedCoProcessFunction): ProcessElement1 receives the
// records of the first input decoded into IN1, ProcessElement2 those of the
// second decoded into IN2. Keyed state, timers and ctx.CurrentKey() are the
// record's key whichever input it came from (both inputs' keyBy must give
// equal key bytes for records that meet). Every method runs on the
// subtask's goroutine, never two at once. Add OnTimer (TimerFunction) for
// timers, as for a KeyedProcessFunction.
type KeyedCoProcessFunction[IN1, IN2, OUT any] interface {
	Open(ctx api.Context) error
	ProcessElement1(ctx *Context[OUT], in IN1) error
	ProcessElement2(ctx *Context[OUT], in IN2) error
	// Finish runs once when both inputs ended; ctx has no key.
	Finish(ctx *Context[OUT]) error
	Close() error
}

// CoDefinition defines a two-input operator type around a
// KeyedCoProcessFunction. A spec lists two inputs, each with a keyBy
// (inputs: [{from: a, keyBy: user}, {from: b, keyBy: id}]) or one keyBy
// for both.
type CoDefinition[IN1, IN2, OUT any] struct {
	Name    string
	Doc     string
	Fields  []api.Field
	Example string
	// In1, In2 and Out are the record codecs; nil means JSON.
	In1 Codec[IN1]
	In2 Codec[IN2]
	Out Codec[OUT]
	// Capabilities are checked as for a one-input Definition.
	Capabilities Capabilities
	New          func(cfg api.Config) (KeyedCoProcessFunction[IN1, IN2, OUT], error)
}

// CoType returns the api.OperatorType of d: a keyed two-input operator
// (Inputs: 2) that decodes each input's records, runs the function and
// encodes what it emits. Capabilities are checked when a job is built, as
// for Type.
func CoType[IN1, IN2, OUT any](d CoDefinition[IN1, IN2, OUT]) (api.OperatorType, error) {
	if d.New == nil {
		return api.OperatorType{}, fmt.Errorf("typed type %q: New is nil: give the definition a constructor", d.Name)
	}
	if err := checkSideOutputNames(d.Name, d.Capabilities); err != nil {
		return api.OperatorType{}, err
	}
	if d.In1 == nil {
		d.In1 = JSON[IN1]()
	}
	if d.In2 == nil {
		d.In2 = JSON[IN2]()
	}
	if d.Out == nil {
		d.Out = JSON[OUT]()
	}
	def := &d
	return api.OperatorType{
		Name: d.Name, Kind: api.KindOperator, Keyed: true, Inputs: 2, Doc: d.Doc, Fields: d.Fields, Example: d.Example,
		SideOutputs: d.Capabilities.SideOutputs,
		NewOperator: def.newOperator,
		CheckJob:    func(v api.JobView) error { return checkCaps(d.Name, d.Capabilities, v) },
	}, nil
}

// MustCoType is CoType that panics, for registries built at start-up.
func MustCoType[IN1, IN2, OUT any](d CoDefinition[IN1, IN2, OUT]) api.OperatorType {
	t, err := CoType(d)
	if err != nil {
		panic(err)
	}
	return t
}

func (d *CoDefinition[IN1, IN2, OUT]) newOperator(cfg api.Config) (api.Operator, error) {
	fn, err := d.New(cfg)
	if err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, fmt.Errorf("typed type %q: New returned a nil function", d.Name)
	}
	tf, err := timerFunction[OUT](d.Name, d.Capabilities, fn)
	if err != nil {
		return nil, err
	}
	o := &coOperator[IN1, IN2, OUT]{fn: fn, tf: tf, in1: d.In1, in2: d.In2}
	o.core.init(d.Name, d.Capabilities)
	o.ctx = Context[OUT]{c: &o.core, enc: instanceOf(d.Out)}
	return o, nil
}

// coOperator adapts a KeyedCoProcessFunction to api.TwoInputOperator.
type coOperator[IN1, IN2, OUT any] struct {
	fn   KeyedCoProcessFunction[IN1, IN2, OUT]
	tf   TimerFunction[OUT]
	in1  Codec[IN1]
	in2  Codec[IN2]
	ctx  Context[OUT]
	core core
}

var (
	_ api.TwoInputOperator = (*coOperator[int, int, int])(nil)
	_ api.TimerHandler     = (*coOperator[int, int, int])(nil)
)

func (o *coOperator[IN1, IN2, OUT]) Open(ctx api.Context) error {
	if err := o.core.open(ctx); err != nil {
		return err
	}
	return o.fn.Open(ctx)
}

func (o *coOperator[IN1, IN2, OUT]) ProcessRecord(r api.Record, out api.Collector) error {
	v, err := o.in1.Decode(r.Value)
	if err != nil {
		return decodeErr(o.core.name, "first input ", r.Value, err)
	}
	o.core.record(&r, out)
	return o.fn.ProcessElement1(&o.ctx, v)
}

func (o *coOperator[IN1, IN2, OUT]) ProcessRecord2(r api.Record, out api.Collector) error {
	v, err := o.in2.Decode(r.Value)
	if err != nil {
		return decodeErr(o.core.name, "second input ", r.Value, err)
	}
	o.core.record(&r, out)
	return o.fn.ProcessElement2(&o.ctx, v)
}

func (o *coOperator[IN1, IN2, OUT]) OnTimer(t api.Timer, out api.Collector) error {
	if o.tf == nil {
		return fmt.Errorf("type %q: a timer fired, but the function has no OnTimer", o.core.name)
	}
	o.core.timer(&t, out)
	return o.tf.OnTimer(&o.ctx, Timer{Domain: t.Domain, Timestamp: t.Timestamp})
}

func (o *coOperator[IN1, IN2, OUT]) Finish(out api.Collector) error {
	o.core.finish(out)
	return o.fn.Finish(&o.ctx)
}

func (o *coOperator[IN1, IN2, OUT]) Close() error { return o.fn.Close() }
