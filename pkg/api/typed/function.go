package typed

import (
	"errors"
	"fmt"
	"strings"

	"github.com/flowrt/flow/pkg/api"
)

// KeyedProcessFunction is user logic on a keyed stream of IN values,
// emitting OUT values. Every method runs on the subtask's goroutine.
type KeyedProcessFunction[IN, OUT any] interface {
	// Open declares state (Value, List, Map) and metrics.
	Open(ctx api.Context) error
	// ProcessElement handles one record of ctx.CurrentKey(). An error is a
	// record error (onError: skip drops the record).
	ProcessElement(ctx *Context[OUT], in IN) error
	// Finish runs once when the input ended; ctx has no key (state and
	// timers are not available), Emit works.
	Finish(ctx *Context[OUT]) error
	Close() error
}

// TimerFunction is a KeyedProcessFunction with timers: OnTimer runs when a
// timer registered through Context.Timers fires, with the timer's key
// current and ctx.Timestamp() the timer's time. Declare the timer domains
// it uses in Capabilities.
type TimerFunction[OUT any] interface {
	OnTimer(ctx *Context[OUT], t Timer) error
}

// Timer is a timer that fired.
type Timer struct {
	Domain    api.TimeDomain
	Timestamp int64
}

// Base is embedded by functions for the no-op Open, Finish and Close. It
// has no OnTimer on purpose: a function with timers implements its own,
// which is how the capability check sees them.
type Base[OUT any] struct{}

func (Base[OUT]) Open(api.Context) error     { return nil }
func (Base[OUT]) Finish(*Context[OUT]) error { return nil }
func (Base[OUT]) Close() error               { return nil }

// Capabilities are what a function uses beyond ProcessElement, checked
// when a job using its type is built.
type Capabilities struct {
	// EventTimers: the function registers event-time timers. A job whose
	// sources upstream of it assign no watermarks is refused.
	EventTimers bool
	// ProcessingTimers: the function registers processing-time timers.
	ProcessingTimers bool
	// EventTime: the function needs watermarks without timers (it reads
	// Context.Timers().CurrentWatermark, e.g. to route late records).
	EventTime bool
	// SideOutputs are the names of the function's side outputs (see
	// OutputTag): the type's api.OperatorType.SideOutputs.
	SideOutputs []string
}

// Definition defines an operator type around a KeyedProcessFunction.
type Definition[IN, OUT any] struct {
	// Name, Doc, Fields and Example are those of api.OperatorType.
	Name    string
	Doc     string
	Fields  []api.Field
	Example string
	// In and Out are the record codecs; nil means JSON.
	In  Codec[IN]
	Out Codec[OUT]
	// Capabilities the function uses.
	Capabilities Capabilities
	// New builds one subtask's function from the validated config. Like
	// every constructor it must not do I/O: a job is built with it.
	New func(cfg api.Config) (KeyedProcessFunction[IN, OUT], error)
}

// ErrCapability is wrapped by the errors of the capability checks.
var ErrCapability = errors.New("capability")

// Type returns the api.OperatorType of d: a keyed operator that decodes each
// record into IN, runs the function and encodes what it emits. Its
// constructor and its CheckJob hook check the capabilities, so a job that
// misuses them is refused when it is built.
func Type[IN, OUT any](d Definition[IN, OUT]) (api.OperatorType, error) {
	if d.New == nil {
		return api.OperatorType{}, fmt.Errorf("typed type %q: New is nil: give the definition a constructor", d.Name)
	}
	if err := checkSideOutputNames(d.Name, d.Capabilities); err != nil {
		return api.OperatorType{}, err
	}
	if d.In == nil {
		d.In = JSON[IN]()
	}
	if d.Out == nil {
		d.Out = JSON[OUT]()
	}
	def := &d
	return api.OperatorType{
		Name: d.Name, Kind: api.KindOperator, Keyed: true, Doc: d.Doc, Fields: d.Fields, Example: d.Example,
		SideOutputs: d.Capabilities.SideOutputs,
		NewOperator: def.newOperator,
		CheckJob:    def.checkJob,
	}, nil
}

// MustType is Type that panics, for registries built at start-up.
func MustType[IN, OUT any](d Definition[IN, OUT]) api.OperatorType {
	t, err := Type(d)
	if err != nil {
		panic(err)
	}
	return t
}

// Register adds d's type to reg.
func Register[IN, OUT any](reg *api.Registry, d Definition[IN, OUT]) error {
	t, err := Type(d)
	if err != nil {
		return err
	}
	return reg.Register(t)
}

func (d *Definition[IN, OUT]) newOperator(cfg api.Config) (api.Operator, error) {
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
	return newOperator(d, fn, tf), nil
}

// timerFunction returns fn's OnTimer (nil without one) after checking it
// against the declared timer capabilities.
func timerFunction[OUT any](name string, caps Capabilities, fn any) (TimerFunction[OUT], error) {
	tf, hasTimer := fn.(TimerFunction[OUT])
	switch declared := caps.EventTimers || caps.ProcessingTimers; {
	case hasTimer && !declared:
		return nil, fmt.Errorf("%w: type %q: %T has OnTimer but the type declares no timers: set Capabilities.EventTimers or ProcessingTimers", ErrCapability, name, fn)
	case declared && !hasTimer:
		return nil, fmt.Errorf("%w: type %q declares timers but %T has no OnTimer(*typed.Context, typed.Timer) error: add it or drop the capability", ErrCapability, name, fn)
	}
	return tf, nil
}

func (d *Definition[IN, OUT]) checkJob(v api.JobView) error {
	return checkCaps(d.Name, d.Capabilities, v)
}

// checkCaps is the CheckJob hook of every typed type.
func checkCaps(name string, caps Capabilities, v api.JobView) error {
	if (caps.EventTimers || caps.EventTime) && len(v.SourcesWithoutWatermarks) > 0 {
		what := "event-time timers"
		if !caps.EventTimers {
			what = "event time"
		}
		return fmt.Errorf("%w: type %q uses %s, but source %s upstream assigns no watermarks: give it watermarks: {timestamp: ..., outOfOrderness: ...}",
			ErrCapability, name, what, quoteList(v.SourcesWithoutWatermarks))
	}
	return nil
}

// checkSideOutputNames checks the declared side output names as the
// registry will.
func checkSideOutputNames(name string, caps Capabilities) error {
	t := api.OperatorType{Name: name, Kind: api.KindOperator, SideOutputs: caps.SideOutputs,
		NewOperator: func(api.Config) (api.Operator, error) { return nil, nil }}
	if err := api.NewRegistry().Register(t); err != nil {
		return fmt.Errorf("typed type %q: %w", name, err)
	}
	return nil
}

func quoteList(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return strings.Join(q, ", ")
}
