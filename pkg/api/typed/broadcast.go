package typed

import (
	"errors"
	"fmt"

	"github.com/flowrt/flow/pkg/api"
)

// KeyedBroadcastProcessFunction is the broadcast state pattern (Flink's
// KeyedBroadcastProcessFunction): a keyed stream of IN values (the first
// input) and a broadcast stream of BC values (the second input, which
// every subtask receives whole).
//
// ProcessBroadcastElement runs for every broadcast record on every subtask,
// with no current key; it is the one place that may write broadcast state
// (Broadcast handles' Put, Remove, Clear take its *BroadcastContext). Apply
// every update the same way and the state stays identical on all
// subtasks; checkpoints store it and a restore at any parallelism gives
// every new subtask a copy. ProcessElement runs for the keyed records with
// the usual *Context (key, keyed state, timers) and reads broadcast state
// (Get, Range). Add OnTimer (TimerFunction) for timers.
type KeyedBroadcastProcessFunction[IN, BC, OUT any] interface {
	Open(ctx api.Context) error
	ProcessElement(ctx *Context[OUT], in IN) error
	ProcessBroadcastElement(ctx *BroadcastContext[OUT], in BC) error
	// Finish runs once when both inputs ended; ctx has no key.
	Finish(ctx *Context[OUT]) error
	Close() error
}

// BroadcastDefinition defines a two-input operator type around a
// KeyedBroadcastProcessFunction. A spec keys the first input and
// broadcasts the second (inputs: [{from: events, keyBy: key}, {from:
// rules, partitioning: broadcast}]); a job that does not broadcast the
// second input is refused when it is built.
type BroadcastDefinition[IN, BC, OUT any] struct {
	Name    string
	Doc     string
	Fields  []api.Field
	Example string
	// In, Broadcast and Out are the record codecs; nil means JSON.
	In        Codec[IN]
	Broadcast Codec[BC]
	Out       Codec[OUT]
	// Capabilities are checked as for a one-input Definition.
	Capabilities Capabilities
	New          func(cfg api.Config) (KeyedBroadcastProcessFunction[IN, BC, OUT], error)
}

// BroadcastType returns the api.OperatorType of d: a keyed two-input
// operator (Inputs: 2) whose second input must be broadcast.
func BroadcastType[IN, BC, OUT any](d BroadcastDefinition[IN, BC, OUT]) (api.OperatorType, error) {
	if d.New == nil {
		return api.OperatorType{}, fmt.Errorf("typed type %q: New is nil: give the definition a constructor", d.Name)
	}
	if err := checkSideOutputNames(d.Name, d.Capabilities); err != nil {
		return api.OperatorType{}, err
	}
	if d.In == nil {
		d.In = JSON[IN]()
	}
	if d.Broadcast == nil {
		d.Broadcast = JSON[BC]()
	}
	if d.Out == nil {
		d.Out = JSON[OUT]()
	}
	def := &d
	return api.OperatorType{
		Name: d.Name, Kind: api.KindOperator, Keyed: true, Inputs: 2, Doc: d.Doc, Fields: d.Fields, Example: d.Example,
		SideOutputs: d.Capabilities.SideOutputs,
		NewOperator: def.newOperator,
		CheckJob:    def.checkJob,
	}, nil
}

// MustBroadcastType is BroadcastType that panics, for registries built at
// start-up.
func MustBroadcastType[IN, BC, OUT any](d BroadcastDefinition[IN, BC, OUT]) api.OperatorType {
	t, err := BroadcastType(d)
	if err != nil {
		panic(err)
	}
	return t
}

func (d *BroadcastDefinition[IN, BC, OUT]) checkJob(v api.JobView) error {
	for _, in := range v.Inputs {
		switch {
		case in.Input == 1 && in.Partitioning != "broadcast":
			return fmt.Errorf("%w: type %q is a broadcast function, but its second input %q is partitioned %s: give it partitioning: broadcast",
				ErrCapability, d.Name, in.ID, in.Partitioning)
		case in.Input == 0 && in.Partitioning != "hash":
			return fmt.Errorf("%w: type %q is a broadcast function, but its first input %q is not keyed: give it keyBy",
				ErrCapability, d.Name, in.ID)
		}
	}
	return checkCaps(d.Name, d.Capabilities, v)
}

func (d *BroadcastDefinition[IN, BC, OUT]) newOperator(cfg api.Config) (api.Operator, error) {
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
	o := &broadcastOperator[IN, BC, OUT]{fn: fn, tf: tf, in: d.In, bc: d.Broadcast}
	o.core.init(d.Name, d.Capabilities)
	enc := instanceOf(d.Out)
	o.ctx = Context[OUT]{c: &o.core, enc: enc}
	o.bctx = BroadcastContext[OUT]{c: &o.core, enc: enc}
	return o, nil
}

// broadcastOperator adapts a KeyedBroadcastProcessFunction to
// api.TwoInputOperator.
type broadcastOperator[IN, BC, OUT any] struct {
	fn   KeyedBroadcastProcessFunction[IN, BC, OUT]
	tf   TimerFunction[OUT]
	in   Codec[IN]
	bc   Codec[BC]
	ctx  Context[OUT]
	bctx BroadcastContext[OUT]
	core core
}

var (
	_ api.TwoInputOperator = (*broadcastOperator[int, int, int])(nil)
	_ api.TimerHandler     = (*broadcastOperator[int, int, int])(nil)
)

func (o *broadcastOperator[IN, BC, OUT]) Open(ctx api.Context) error {
	if err := o.core.open(ctx); err != nil {
		return err
	}
	return o.fn.Open(ctx)
}

func (o *broadcastOperator[IN, BC, OUT]) ProcessRecord(r api.Record, out api.Collector) error {
	v, err := o.in.Decode(r.Value)
	if err != nil {
		return decodeErr(o.core.name, "input ", r.Value, err)
	}
	o.core.record(&r, out)
	return o.fn.ProcessElement(&o.ctx, v)
}

func (o *broadcastOperator[IN, BC, OUT]) ProcessRecord2(r api.Record, out api.Collector) error {
	v, err := o.bc.Decode(r.Value)
	if err != nil {
		return decodeErr(o.core.name, "broadcast ", r.Value, err)
	}
	c := &o.core
	c.key, c.ts, c.emitTs, c.out, c.noKey, c.broadcast = nil, r.Timestamp, r.Timestamp, out, true, true
	err = o.fn.ProcessBroadcastElement(&o.bctx, v)
	c.broadcast = false
	return err
}

func (o *broadcastOperator[IN, BC, OUT]) OnTimer(t api.Timer, out api.Collector) error {
	if o.tf == nil {
		return fmt.Errorf("type %q: a timer fired, but the function has no OnTimer", o.core.name)
	}
	o.core.timer(&t, out)
	return o.tf.OnTimer(&o.ctx, Timer{Domain: t.Domain, Timestamp: t.Timestamp})
}

func (o *broadcastOperator[IN, BC, OUT]) Finish(out api.Collector) error {
	o.core.finish(out)
	return o.fn.Finish(&o.ctx)
}

func (o *broadcastOperator[IN, BC, OUT]) Close() error { return o.fn.Close() }

// BroadcastContext is what ProcessBroadcastElement sees: the record's
// timestamp, Emit (records without a key), the clocks, and the right to
// write broadcast state. One per operator instance, reused for every call.
type BroadcastContext[OUT any] struct {
	c   *core
	enc Codec[OUT]
}

// Timestamp is the broadcast record's event time (api.NoTimestamp when it
// has none).
func (x *BroadcastContext[OUT]) Timestamp() int64 { return x.c.ts }

// Emit sends v to the main output, without a key, with the record's
// timestamp.
func (x *BroadcastContext[OUT]) Emit(v OUT) error { return x.EmitAt(v, x.c.emitTs) }

// EmitAt is Emit with an explicit event timestamp.
func (x *BroadcastContext[OUT]) EmitAt(v OUT, ts int64) error { return emit(x.c, x.enc, v, ts) }

// CurrentWatermark is the operator's watermark (math.MinInt64 before the
// first).
func (x *BroadcastContext[OUT]) CurrentWatermark() int64 { return x.c.timers.CurrentWatermark() }

// CurrentProcessingTime is processing time in Unix milliseconds.
func (x *BroadcastContext[OUT]) CurrentProcessingTime() int64 {
	return x.c.timers.CurrentProcessingTime()
}

func (x *BroadcastContext[OUT]) base() *core { return x.c }

func (x *BroadcastContext[OUT]) broadcastWriter() *core { return x.c }

// BroadcastWriter is implemented by *BroadcastContext only: the writes of
// a Broadcast state take it, so that they compile only where broadcast
// records are handled.
type BroadcastWriter interface{ broadcastWriter() *core }

// ErrReadOnly is wrapped by a broadcast state write outside
// ProcessBroadcastElement (with a BroadcastContext kept past its call).
var ErrReadOnly = errors.New("broadcast state is read-only here")

// BroadcastState is a typed broadcast map state: identical on every
// subtask, read anywhere, written only in ProcessBroadcastElement.
type BroadcastState[K, V any] struct {
	s *api.BroadcastState[K, V]
}

// Broadcast declares a broadcast map state from K to V in Open, with the
// default state codecs of K and V (see DefaultStateCodec; WithKeyCodec and
// WithCodec override them). Keep its name and codecs across versions:
// savepoints match broadcast state by them.
func Broadcast[K, V any](ctx api.Context, name string, opts ...StateOption) (*BroadcastState[K, V], error) {
	store, err := api.OperatorStateStoreOf(ctx)
	if err != nil {
		return nil, err
	}
	o := options(opts)
	if o.ttl != nil || o.def != nil {
		return nil, fmt.Errorf("broadcast state %q: TTL and defaults do not apply to broadcast state: remove the option", name)
	}
	kc, err := codecOf[K](name, "key", o.key)
	if err != nil {
		return nil, err
	}
	vc, err := codecOf[V](name, "value", o.codec)
	if err != nil {
		return nil, err
	}
	s, err := api.GetBroadcastState(store, api.BroadcastStateDescriptor[K, V]{Name: name, KeyCodec: kc, ValueCodec: vc})
	if err != nil {
		return nil, err
	}
	return &BroadcastState[K, V]{s: s}, nil
}

// Get returns the value under k.
func (b *BroadcastState[K, V]) Get(k K) (V, bool, error) { return b.s.Get(k) }

// Range calls fn for each entry, in no particular order, until it returns
// false.
func (b *BroadcastState[K, V]) Range(fn func(k K, v V) bool) error { return b.s.Range(fn) }

func (b *BroadcastState[K, V]) writable(w BroadcastWriter) error {
	if c := w.broadcastWriter(); !c.broadcast {
		return fmt.Errorf("type %q: %w: write broadcast state in ProcessBroadcastElement only, with its context", c.name, ErrReadOnly)
	}
	return nil
}

// Put stores v under k.
func (b *BroadcastState[K, V]) Put(w BroadcastWriter, k K, v V) error {
	if err := b.writable(w); err != nil {
		return err
	}
	return b.s.Put(k, v)
}

// Remove deletes k.
func (b *BroadcastState[K, V]) Remove(w BroadcastWriter, k K) error {
	if err := b.writable(w); err != nil {
		return err
	}
	return b.s.Remove(k)
}

// Clear removes every entry.
func (b *BroadcastState[K, V]) Clear(w BroadcastWriter) error {
	if err := b.writable(w); err != nil {
		return err
	}
	b.s.Clear()
	return nil
}
