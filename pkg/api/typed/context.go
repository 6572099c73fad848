package typed

import (
	"fmt"

	"github.com/flowrt/flow/pkg/api"
)

// core is the untyped part of an operator instance that its Context, its
// Timers and its side outputs share.
type core struct {
	name   string
	caps   Capabilities
	svc    api.TimerService
	out    api.Collector
	key    []byte
	ts     int64 // Context.Timestamp
	emitTs int64 // the timestamp of emitted records
	noKey  bool  // in Finish and for broadcast records: no key is current
	// broadcast: a broadcast record is being processed (broadcast state
	// may be written).
	broadcast bool
	buf       []byte
	// sides are the collectors of the declared side outputs (from Open).
	sides  map[string]api.Collector
	timers Timers
}

// Context is what a function sees of the record (or timer) it handles. One
// Context per operator instance is reused for every call: do not keep it
// or its slices past the call.
type Context[OUT any] struct {
	c   *core
	enc Codec[OUT]
}

// Timestamp is the record's event time in milliseconds (api.NoTimestamp
// when it has none); in OnTimer, the timer's time.
func (x *Context[OUT]) Timestamp() int64 { return x.c.ts }

// CurrentKey is the key of the record or timer: the bytes of the keyBy
// result, valid during the call.
func (x *Context[OUT]) CurrentKey() []byte { return x.c.key }

// Timers is the timer service, scoped to the current key.
func (x *Context[OUT]) Timers() *Timers { return &x.c.timers }

// Emit sends v to the main output, with the current key and the record's
// timestamp (in OnTimer: the event-time timer's time; none for
// processing-time timers).
func (x *Context[OUT]) Emit(v OUT) error { return x.EmitAt(v, x.c.emitTs) }

// EmitAt is Emit with an explicit event timestamp.
func (x *Context[OUT]) EmitAt(v OUT, ts int64) error { return emit(x.c, x.enc, v, ts) }

func emit[OUT any](c *core, enc Codec[OUT], v OUT, ts int64) error {
	b, err := enc.Encode(c.buf[:0], v)
	if err != nil {
		return fmt.Errorf("type %q: encode output: %w", c.name, err)
	}
	c.buf = b
	c.out.Collect(api.Record{Key: c.key, Value: b, Timestamp: ts})
	return nil
}

func (x *Context[OUT]) base() *core { return x.c }

// Emitter is implemented by every *Context; OutputTag.Emit takes it.
type Emitter interface{ base() *core }

// OutputTag names a side output of values of T. Declare the name in
// Capabilities.SideOutputs; a job reads it as an input of its own (in a
// spec, `inputs: [<operator id>.<name>]`; jobbuilder's Op.SideOutput),
// which receives only that side output's records.
type OutputTag[T any] struct {
	name  string
	codec Codec[T]
}

// NewOutputTag returns the tag of side output name with codec (nil: JSON).
func NewOutputTag[T any](name string, codec Codec[T]) OutputTag[T] {
	if codec == nil {
		codec = JSON[T]()
	}
	return OutputTag[T]{name: name, codec: codec}
}

// Name is the side output's name.
func (t OutputTag[T]) Name() string { return t.name }

// Emit sends v to the side output, with the current key and timestamp.
func (t OutputTag[T]) Emit(ctx Emitter, v T) error {
	c := ctx.base()
	out, ok := c.sides[t.name]
	if !ok {
		return fmt.Errorf("%w: type %q emits to side output %q, which it does not declare: add it to Capabilities.SideOutputs", ErrCapability, c.name, t.name)
	}
	b, err := t.codec.Encode(c.buf[:0], v)
	if err != nil {
		return fmt.Errorf("type %q: encode side output %q: %w", c.name, t.name, err)
	}
	c.buf = b
	out.Collect(api.Record{Key: c.key, Value: b, Timestamp: c.emitTs})
	return nil
}

// Timers registers and deletes timers of the current key. A timer is
// (domain, timestamp, key): registering it again is a no-op. Timestamps are
// milliseconds (event time, or Unix milliseconds for processing time).
type Timers struct{ c *core }

func (t *Timers) check(domain api.TimeDomain) error {
	c := t.c
	if ok := (domain == api.EventTime && c.caps.EventTimers) || (domain == api.ProcessingTime && c.caps.ProcessingTimers); !ok {
		field := "EventTimers"
		if domain == api.ProcessingTime {
			field = "ProcessingTimers"
		}
		return fmt.Errorf("%w: type %q uses %v timers but does not declare them: set Capabilities.%s", ErrCapability, c.name, domain, field)
	}
	if c.noKey || c.svc == nil {
		return fmt.Errorf("type %q: timers need a current key: register them in ProcessElement or OnTimer, not in Open or Finish", c.name)
	}
	return nil
}

// RegisterEventTime registers an event-time timer at ts.
func (t *Timers) RegisterEventTime(ts int64) error {
	if err := t.check(api.EventTime); err != nil {
		return err
	}
	return t.c.svc.RegisterEventTimeTimer(ts, nil)
}

// DeleteEventTime deletes the event-time timer at ts.
func (t *Timers) DeleteEventTime(ts int64) error {
	if err := t.check(api.EventTime); err != nil {
		return err
	}
	return t.c.svc.DeleteEventTimeTimer(ts, nil)
}

// RegisterProcessingTime registers a processing-time timer at ts.
func (t *Timers) RegisterProcessingTime(ts int64) error {
	if err := t.check(api.ProcessingTime); err != nil {
		return err
	}
	return t.c.svc.RegisterProcessingTimeTimer(ts, nil)
}

// DeleteProcessingTime deletes the processing-time timer at ts.
func (t *Timers) DeleteProcessingTime(ts int64) error {
	if err := t.check(api.ProcessingTime); err != nil {
		return err
	}
	return t.c.svc.DeleteProcessingTimeTimer(ts, nil)
}

// CurrentWatermark is the operator's watermark (math.MinInt64 before the
// first).
func (t *Timers) CurrentWatermark() int64 {
	if t.c.svc == nil {
		return api.NoTimestamp
	}
	return t.c.svc.CurrentWatermark()
}

// CurrentProcessingTime is processing time in Unix milliseconds.
func (t *Timers) CurrentProcessingTime() int64 {
	if t.c.svc == nil {
		return 0
	}
	return t.c.svc.CurrentProcessingTime()
}
