package typed

import (
	"errors"
	"fmt"

	"github.com/flowrt/flow/pkg/api"
)

// SourceFunction reads a stream of OUT values from splits of type SPLIT:
// independent parts of the input (a file, a partition, a range of ids),
// each of which the function reads in order and can resume from the
// progress it records in the split value. Every method runs on the
// subtask's goroutine.
//
// Checkpoints store the splits, encoded with the definition's Split codec
// (JSON by default): a job restarts exactly where the last checkpoint
// left every split, at the same or another parallelism (the runtime hands
// each split to one new subtask, as for api.SplitSource). A function that
// can cut splits into smaller ones, so that a job rescaled to more
// subtasks than splits keeps all of them busy, also implements
// SplitDivider.
type SourceFunction[OUT, SPLIT any] interface {
	// Open connects (it may do I/O, unlike the constructor) and chooses
	// the splits of this subtask of a job that starts without state, from
	// ctx.Info().SubtaskIndex and Parallelism.
	Open(ctx api.Context) error
	// Next emits a bounded batch of values into out and returns. It must
	// not block for long: the task's mailbox (checkpoints, timers,
	// cancellation) runs between calls. Ask for a pause with
	// api.SourceStatus.WaitUntil; report the end of a bounded input with
	// End.
	Next(out *SourceContext[OUT]) (api.SourceStatus, error)
	// Splits returns the unfinished splits with their progress: what a
	// checkpoint stores. It is called between two Next calls, so the
	// progress is exactly after the last value emitted.
	Splits() ([]SPLIT, error)
	// RestoreSplits replaces the splits Open chose when the job restores
	// a checkpoint or savepoint; it is called after Open, before the first
	// Next. The list may be empty (every split of this subtask had
	// finished, or there are more subtasks than splits).
	RestoreSplits(splits []SPLIT) error
	Close() error
}

// SplitDivider is implemented by source functions whose splits can be cut
// into smaller ones. DivideSplits is called before Open on every subtask
// of a job restored at a parallelism n higher than its number of splits,
// with all the splits; it returns splits that together cover exactly the
// input of the given ones (no value lost, none twice), ideally at least n.
// It must be deterministic: every subtask computes it from the same input
// and keeps its own share.
type SplitDivider[SPLIT any] interface {
	DivideSplits(splits []SPLIT, n int) ([]SPLIT, error)
}

// SourceBase is embedded by source functions for the no-op Open and
// Close.
type SourceBase struct{}

func (SourceBase) Open(api.Context) error { return nil }
func (SourceBase) Close() error           { return nil }

// SourceContext is what a source function emits into. One SourceContext
// per source instance is reused for every Next call: do not keep it.
type SourceContext[OUT any] struct {
	name string
	out  api.SourceOutput
	enc  Codec[OUT]
	buf  []byte
}

// Emit sends v downstream without an event timestamp.
func (c *SourceContext[OUT]) Emit(v OUT) error { return c.EmitAt(v, api.NoTimestamp) }

// EmitAt sends v downstream with event time ts (milliseconds).
func (c *SourceContext[OUT]) EmitAt(v OUT, ts int64) error {
	b, err := c.enc.Encode(c.buf[:0], v)
	if err != nil {
		return fmt.Errorf("type %q: encode output: %w", c.name, err)
	}
	c.buf = b
	c.out.Collect(api.Record{Value: b, Timestamp: ts})
	return nil
}

// EmitWatermark declares that no value with a smaller timestamp follows
// from this subtask. A source that emits watermarks in every
// configuration sets SourceDefinition.Watermarks.
func (c *SourceContext[OUT]) EmitWatermark(ts int64) { c.out.EmitWatermark(ts) }

// MarkIdle says this subtask emits nothing for now: downstream watermarks
// do not wait for it until it emits again.
func (c *SourceContext[OUT]) MarkIdle() { c.out.MarkIdle() }

// SourceDefinition defines a source type around a SourceFunction.
type SourceDefinition[OUT, SPLIT any] struct {
	// Name, Doc, Fields and Example are those of api.OperatorType.
	Name    string
	Doc     string
	Fields  []api.Field
	Example string
	// Out is the record codec; nil means JSON.
	Out Codec[OUT]
	// Split encodes the splits in checkpoints; nil means JSON. Its bytes
	// are a persisted format: change the SPLIT type compatibly (new JSON
	// fields with a zero default), or give a codec that reads old splits.
	Split Codec[SPLIT]
	// Watermarks: the function emits watermarks itself in every
	// configuration (api.OperatorType.Watermarks), so event-time
	// operators downstream need no `watermarks` section on it.
	Watermarks bool
	// New builds one subtask's function from the validated config. It must
	// not do I/O (a job is built with it): connect in Open.
	New func(cfg api.Config) (SourceFunction[OUT, SPLIT], error)
}

// SourceType returns the api.OperatorType of d: an api.SplitSource (and
// api.SplitDivider) whose values are encoded with d.Out and whose splits
// are checkpointed with d.Split.
func SourceType[OUT, SPLIT any](d SourceDefinition[OUT, SPLIT]) (api.OperatorType, error) {
	if d.New == nil {
		return api.OperatorType{}, fmt.Errorf("typed source type %q: New is nil: give the definition a constructor", d.Name)
	}
	if d.Out == nil {
		d.Out = JSON[OUT]()
	}
	if d.Split == nil {
		d.Split = JSON[SPLIT]()
	}
	def := &d
	return api.OperatorType{
		Name: d.Name, Kind: api.KindSource, Doc: d.Doc, Fields: d.Fields, Example: d.Example,
		Watermarks: d.Watermarks, NewSource: def.newSource,
	}, nil
}

// MustSourceType is SourceType that panics, for registries built at
// start-up.
func MustSourceType[OUT, SPLIT any](d SourceDefinition[OUT, SPLIT]) api.OperatorType {
	t, err := SourceType(d)
	if err != nil {
		panic(err)
	}
	return t
}

// RegisterSource adds d's type to reg.
func RegisterSource[OUT, SPLIT any](reg *api.Registry, d SourceDefinition[OUT, SPLIT]) error {
	t, err := SourceType(d)
	if err != nil {
		return err
	}
	return reg.Register(t)
}

func (d *SourceDefinition[OUT, SPLIT]) newSource(cfg api.Config) (api.Source, error) {
	fn, err := d.New(cfg)
	if err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, fmt.Errorf("typed source type %q: New returned a nil function", d.Name)
	}
	s := &source[OUT, SPLIT]{name: d.Name, split: d.Split, fn: fn}
	s.ctx = SourceContext[OUT]{name: d.Name, enc: instanceOf(d.Out)}
	s.cl, _ = fn.(api.CheckpointListener)
	return s, nil
}

// source adapts a SourceFunction to api.SplitSource, api.SplitDivider
// and api.CheckpointListener (forwarded when the function has it).
type source[OUT, SPLIT any] struct {
	name  string
	split Codec[SPLIT]
	fn    SourceFunction[OUT, SPLIT]
	cl    api.CheckpointListener
	ctx   SourceContext[OUT]
}

var (
	_ api.SplitSource        = (*source[int, int])(nil)
	_ api.SplitDivider       = (*source[int, int])(nil)
	_ api.CheckpointListener = (*source[int, int])(nil)
)

func (s *source[OUT, SPLIT]) Open(ctx api.Context) error { return s.fn.Open(ctx) }

func (s *source[OUT, SPLIT]) Next(out api.SourceOutput) (api.SourceStatus, error) {
	s.ctx.out = out
	return s.fn.Next(&s.ctx)
}

// Position is not called for a split source; Restore is called only for
// a snapshot without splits, which a typed source never wrote.
func (s *source[OUT, SPLIT]) Position() ([]byte, error) { return nil, nil }

func (s *source[OUT, SPLIT]) Restore(position []byte) error {
	if len(position) == 0 {
		return nil
	}
	return fmt.Errorf("typed source type %q: the snapshot holds a position, not splits: it was taken by another source type; restore it with that type, or start without the snapshot (or with --allow-non-restored-state after changing the source's uid)", s.name)
}

func (s *source[OUT, SPLIT]) Splits() ([][]byte, error) {
	splits, err := s.fn.Splits()
	if err != nil {
		return nil, err
	}
	return s.encode(splits)
}

func (s *source[OUT, SPLIT]) encode(splits []SPLIT) ([][]byte, error) {
	out := make([][]byte, len(splits))
	for i, sp := range splits {
		b, err := s.split.Encode(nil, sp)
		if err != nil {
			return nil, fmt.Errorf("typed source type %q: encode split %d: %w", s.name, i, err)
		}
		out[i] = b
	}
	return out, nil
}

func (s *source[OUT, SPLIT]) decode(raw [][]byte) ([]SPLIT, error) {
	splits := make([]SPLIT, len(raw))
	for i, b := range raw {
		sp, err := s.split.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("typed source type %q: split %d of the snapshot %.64q: %w (was the split type changed incompatibly?)", s.name, i, b, err)
		}
		splits[i] = sp
	}
	return splits, nil
}

func (s *source[OUT, SPLIT]) RestoreSplits(raw [][]byte) error {
	splits, err := s.decode(raw)
	if err != nil {
		return err
	}
	return s.fn.RestoreSplits(splits)
}

// DivideSplits forwards to the function's SplitDivider; without one the
// splits stay as they are (some subtasks then read none).
func (s *source[OUT, SPLIT]) DivideSplits(raw [][]byte, n int) ([][]byte, error) {
	d, ok := s.fn.(SplitDivider[SPLIT])
	if !ok {
		return raw, nil
	}
	splits, err := s.decode(raw)
	if err != nil {
		return nil, err
	}
	divided, err := d.DivideSplits(splits, n)
	if err != nil {
		return nil, err
	}
	if len(divided) == 0 && len(splits) > 0 {
		return nil, errors.New("DivideSplits returned no splits for a non-empty input")
	}
	return s.encode(divided)
}

func (s *source[OUT, SPLIT]) NotifyCheckpointComplete(id int64) error {
	if s.cl == nil {
		return nil
	}
	return s.cl.NotifyCheckpointComplete(id)
}

func (s *source[OUT, SPLIT]) NotifyCheckpointAborted(id int64) error {
	if s.cl == nil {
		return nil
	}
	return s.cl.NotifyCheckpointAborted(id)
}

func (s *source[OUT, SPLIT]) Close() error { return s.fn.Close() }
