package typed

import (
	"fmt"

	"github.com/flowrt/flow/pkg/api"
)

// operator adapts a KeyedProcessFunction to api.Operator.
type operator[IN, OUT any] struct {
	name string
	fn   KeyedProcessFunction[IN, OUT]
	tf   TimerFunction[OUT]
	in   Codec[IN]
	ctx  Context[OUT]
	core core
}

var (
	_ api.Operator     = (*operator[int, int])(nil)
	_ api.TimerHandler = (*operator[int, int])(nil)
)

func newOperator[IN, OUT any](d *Definition[IN, OUT], fn KeyedProcessFunction[IN, OUT], tf TimerFunction[OUT]) *operator[IN, OUT] {
	o := &operator[IN, OUT]{name: d.Name, fn: fn, tf: tf, in: d.In}
	o.core = core{name: d.Name, caps: d.Capabilities}
	o.core.timers.c = &o.core
	o.ctx = Context[OUT]{c: &o.core, enc: instanceOf(d.Out)}
	if len(d.Capabilities.SideOutputs) > 0 {
		o.core.prefix = map[string][]byte{}
		for _, n := range append([]string{MainOutput}, d.Capabilities.SideOutputs...) {
			o.core.prefix[n] = envelopePrefix(n)
		}
		o.core.main = o.core.prefix[MainOutput]
	}
	return o
}

func (o *operator[IN, OUT]) Open(ctx api.Context) error {
	svc, err := api.TimerServiceOf(ctx)
	if err != nil {
		return err
	}
	o.core.svc = svc
	return o.fn.Open(ctx)
}

func (o *operator[IN, OUT]) ProcessRecord(r api.Record, out api.Collector) error {
	v, err := o.in.Decode(r.Value)
	if err != nil {
		return fmt.Errorf("type %q: input record %.64q: %w (fix what produces it, or set onError: skip to drop such records)", o.name, r.Value, err)
	}
	c := &o.core
	c.key, c.ts, c.emitTs, c.out = r.Key, r.Timestamp, r.Timestamp, out
	return o.fn.ProcessElement(&o.ctx, v)
}

func (o *operator[IN, OUT]) OnTimer(t api.Timer, out api.Collector) error {
	if o.tf == nil {
		return fmt.Errorf("type %q: a timer fired, but the function has no OnTimer", o.name)
	}
	c := &o.core
	c.key, c.ts, c.emitTs, c.out = t.Key, t.Timestamp, t.Timestamp, out
	if t.Domain == api.ProcessingTime {
		c.emitTs = api.NoTimestamp
	}
	return o.tf.OnTimer(&o.ctx, Timer{Domain: t.Domain, Timestamp: t.Timestamp})
}

func (o *operator[IN, OUT]) Finish(out api.Collector) error {
	c := &o.core
	c.key, c.ts, c.emitTs, c.out, c.noKey = nil, api.NoTimestamp, api.NoTimestamp, out, true
	return o.fn.Finish(&o.ctx)
}

func (o *operator[IN, OUT]) Close() error { return o.fn.Close() }
