package typed

import (
	"fmt"

	"github.com/flowrt/flow/pkg/api"
)

// SinkFunction writes a stream of IN values to an external system. Every
// method runs on the subtask's goroutine. A sink that commits with
// checkpoints also implements api.CheckpointedFunction (pre-commit in
// SnapshotState, commit or clean up in InitializeState) and
// api.CheckpointListener (commit on completion); SinkType forwards both.
type SinkFunction[IN any] interface {
	// Open connects (it may do I/O, unlike the constructor).
	Open(ctx api.Context) error
	// Write handles one record decoded into in. An error fails the task
	// (the job restarts per its strategy), unless it is a RecordError: one
	// bad record, which onError: skip drops and counts. Records the input
	// codec cannot decode are record errors.
	Write(ctx *SinkContext, in IN) error
	// Finish runs once at the end of input: flush everything.
	Finish() error
	Close() error
}

// SinkBase is embedded by sink functions for the no-op Open, Finish and
// Close.
type SinkBase struct{}

func (SinkBase) Open(api.Context) error { return nil }
func (SinkBase) Finish() error          { return nil }
func (SinkBase) Close() error           { return nil }

// SinkContext is what a sink function sees of the record it writes. One
// SinkContext per sink instance is reused for every record: do not keep it
// or its slices past the call.
type SinkContext struct {
	ts  int64
	key []byte
}

// Timestamp is the record's event time in milliseconds (api.NoTimestamp
// when it has none).
func (c *SinkContext) Timestamp() int64 { return c.ts }

// Key is the record's key bytes (nil on a stream that is not keyed).
func (c *SinkContext) Key() []byte { return c.key }

// SinkDefinition defines a sink type around a SinkFunction.
type SinkDefinition[IN any] struct {
	// Name, Doc, Fields and Example are those of api.OperatorType.
	Name    string
	Doc     string
	Fields  []api.Field
	Example string
	// In is the record codec; nil means JSON.
	In Codec[IN]
	// New builds one subtask's function from the validated config. It must
	// not do I/O (a job is built with it): connect in Open.
	New func(cfg api.Config) (SinkFunction[IN], error)
}

// SinkType returns the api.OperatorType of d: a sink that decodes each
// record into IN and hands it to the function.
func SinkType[IN any](d SinkDefinition[IN]) (api.OperatorType, error) {
	if d.New == nil {
		return api.OperatorType{}, fmt.Errorf("typed sink type %q: New is nil: give the definition a constructor", d.Name)
	}
	if d.In == nil {
		d.In = JSON[IN]()
	}
	def := &d
	return api.OperatorType{
		Name: d.Name, Kind: api.KindSink, Doc: d.Doc, Fields: d.Fields, Example: d.Example,
		NewSink: def.newSink,
	}, nil
}

// MustSinkType is SinkType that panics, for registries built at start-up.
func MustSinkType[IN any](d SinkDefinition[IN]) api.OperatorType {
	t, err := SinkType(d)
	if err != nil {
		panic(err)
	}
	return t
}

// RegisterSink adds d's type to reg.
func RegisterSink[IN any](reg *api.Registry, d SinkDefinition[IN]) error {
	t, err := SinkType(d)
	if err != nil {
		return err
	}
	return reg.Register(t)
}

func (d *SinkDefinition[IN]) newSink(cfg api.Config) (api.Sink, error) {
	fn, err := d.New(cfg)
	if err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, fmt.Errorf("typed sink type %q: New returned a nil function", d.Name)
	}
	s := &sink[IN]{name: d.Name, in: instanceOf(d.In), fn: fn}
	cf, isCF := fn.(api.CheckpointedFunction)
	cl, isCL := fn.(api.CheckpointListener)
	if !isCF && !isCL {
		return s, nil
	}
	return &transactionalSink[IN]{sink: s, cf: cf, cl: cl}, nil
}

// sink adapts a SinkFunction to api.Sink.
type sink[IN any] struct {
	name string
	in   Codec[IN]
	fn   SinkFunction[IN]
	ctx  SinkContext
}

func (s *sink[IN]) Open(ctx api.Context) error { return s.fn.Open(ctx) }

func (s *sink[IN]) Write(r api.Record) error {
	v, err := s.in.Decode(r.Value)
	if err != nil {
		return RecordError(decodeErr(s.name, "input ", r.Value, err))
	}
	s.ctx.ts, s.ctx.key = r.Timestamp, r.Key
	return s.fn.Write(&s.ctx, v)
}

func (s *sink[IN]) Finish() error { return s.fn.Finish() }
func (s *sink[IN]) Close() error  { return s.fn.Close() }

// RecordError marks err as caused by one record, not by the sink's
// destination: a sink function returns it for a value it cannot write (one
// the destination refuses, say), and onError: skip then drops the record
// and counts it in flow_operator_records_skipped_total instead of failing
// the task.
func RecordError(err error) error {
	if err == nil {
		return nil
	}
	return recordErr{err}
}

type recordErr struct{ err error }

func (e recordErr) Error() string     { return e.err.Error() }
func (e recordErr) Unwrap() error     { return e.err }
func (e recordErr) RecordError() bool { return true }

// transactionalSink is a sink whose function takes part in checkpoints:
// the runtime sees the interfaces on the adapter, which forwards the ones
// the function has.
type transactionalSink[IN any] struct {
	*sink[IN]
	cf api.CheckpointedFunction // nil: the function has none
	cl api.CheckpointListener   // nil: likewise
}

func (s *transactionalSink[IN]) SnapshotState(id int64) error {
	if s.cf == nil {
		return nil
	}
	return s.cf.SnapshotState(id)
}

func (s *transactionalSink[IN]) InitializeState(restored bool) error {
	if s.cf == nil {
		return nil
	}
	return s.cf.InitializeState(restored)
}

func (s *transactionalSink[IN]) NotifyCheckpointComplete(id int64) error {
	if s.cl == nil {
		return nil
	}
	return s.cl.NotifyCheckpointComplete(id)
}

func (s *transactionalSink[IN]) NotifyCheckpointAborted(id int64) error {
	if s.cl == nil {
		return nil
	}
	return s.cl.NotifyCheckpointAborted(id)
}

var (
	_ api.Sink                 = (*sink[int])(nil)
	_ api.CheckpointedFunction = (*transactionalSink[int])(nil)
	_ api.CheckpointListener   = (*transactionalSink[int])(nil)
)
