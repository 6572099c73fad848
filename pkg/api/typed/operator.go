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
	o.core.init(d.Name, d.Capabilities)
	o.ctx = Context[OUT]{c: &o.core, enc: instanceOf(d.Out)}
	return o
}

// init sets up a core for type name with caps.
func (c *core) init(name string, caps Capabilities) {
	c.name, c.caps = name, caps
	c.timers.c = c
}

// open gets the timer service of a keyed operator and the collectors of
// its side outputs.
func (c *core) open(ctx api.Context) error {
	svc, err := api.TimerServiceOf(ctx)
	if err != nil {
		return err
	}
	c.svc = svc
	c.sides = make(map[string]api.Collector, len(c.caps.SideOutputs))
	for _, n := range c.caps.SideOutputs {
		if c.sides[n], err = api.SideOutputOf(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// record makes r's key and timestamp current, for a call that emits into out.
func (c *core) record(r *api.Record, out api.Collector) {
	c.key, c.ts, c.emitTs, c.out, c.noKey, c.broadcast = r.Key, r.Timestamp, r.Timestamp, out, false, false
}

// timer makes t's key and time current.
func (c *core) timer(t *api.Timer, out api.Collector) {
	c.key, c.ts, c.emitTs, c.out, c.noKey, c.broadcast = t.Key, t.Timestamp, t.Timestamp, out, false, false
	if t.Domain == api.ProcessingTime {
		c.emitTs = api.NoTimestamp
	}
}

// finish: no key is current.
func (c *core) finish(out api.Collector) {
	c.key, c.ts, c.emitTs, c.out, c.noKey, c.broadcast = nil, api.NoTimestamp, api.NoTimestamp, out, true, false
}

func decodeErr(name, input string, v []byte, err error) error {
	return fmt.Errorf("type %q: %srecord %.64q: %w (fix what produces it, or set onError: skip to drop such records)", name, input, v, err)
}

func (o *operator[IN, OUT]) Open(ctx api.Context) error {
	if err := o.core.open(ctx); err != nil {
		return err
	}
	return o.fn.Open(ctx)
}

func (o *operator[IN, OUT]) ProcessRecord(r api.Record, out api.Collector) error {
	v, err := o.in.Decode(r.Value)
	if err != nil {
		return decodeErr(o.name, "input ", r.Value, err)
	}
	o.core.record(&r, out)
	return o.fn.ProcessElement(&o.ctx, v)
}

func (o *operator[IN, OUT]) OnTimer(t api.Timer, out api.Collector) error {
	if o.tf == nil {
		return fmt.Errorf("type %q: a timer fired, but the function has no OnTimer", o.name)
	}
	o.core.timer(&t, out)
	return o.tf.OnTimer(&o.ctx, Timer{Domain: t.Domain, Timestamp: t.Timestamp})
}

func (o *operator[IN, OUT]) Finish(out api.Collector) error {
	o.core.finish(out)
	return o.fn.Finish(&o.ctx)
}

func (o *operator[IN, OUT]) Close() error { return o.fn.Close() }
