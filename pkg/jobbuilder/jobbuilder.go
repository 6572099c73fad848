// Package jobbuilder composes a Flow job in Go, beside the YAML job spec:
// sources, operators (with keyBy, parallelism, uid, partitioning) and sinks
// of registered operator types, and the job's state backend, checkpoint and
// restart settings.
//
//	j := jobbuilder.New("counts").Parallelism(2)
//	gen := j.Source("gen", "datagen").Config(jobbuilder.Config{"count": 1000})
//	cnt := j.Operator("count", "count", gen).KeyBy("key").UID("count-v1")
//	j.Sink("out", "print", cnt)
//	graph, err := j.Build(registry)
//
// What it promises:
//   - Build returns the JobGraph that the equivalent YAML spec gives
//     (docs/reference/job-spec.md): the builder renders the job as a spec
//     and parses it with pkg/jobspec, so defaults, config validation
//     against each type's schema, edge partitioning, topological order and
//     chaining checks are the spec's, by construction. The graph's Spec
//     field holds that rendered YAML (what `flowctl describe` shows).
//   - Every problem is reported at once, as a *jobspec.Errors (errors.Is
//     jobspec.ErrInvalidSpec) whose lines name the job and the operator
//     (`job "counts": operator "count": ...`), without YAML positions.
//   - The builder is not safe for concurrent use; build a job in one
//     goroutine.
//
// The graph is submitted like a spec's: pkg/flowtest's Cluster.Submit, or
// JobManagerService.SubmitJob.
package jobbuilder

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/jobspec"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Config is an operator's config or a job section, keyed as in a spec.
// Values are strings, numbers, bools, time.Durations (written as "500ms"),
// lists and maps of these.
type Config map[string]any

// Partitioning of an operator's inputs when it has no keyBy.
type Partitioning string

// Partitionings (without one, an input is forward when it has the
// operator's parallelism and is its only input, else rebalance).
const (
	Forward   Partitioning = jobspec.PartitioningForwardName
	Rebalance Partitioning = jobspec.PartitioningRebalanceName
	Broadcast Partitioning = jobspec.PartitioningBroadcastName
)

// Watermarks is a source's event-time strategy (the spec's watermarks).
type Watermarks struct {
	// Timestamp is the expression giving a record's event time in ms.
	Timestamp string
	// OutOfOrderness is how late records may be; 0 for none.
	OutOfOrderness time.Duration
	// Interval between watermarks; 0 for the default (200ms).
	Interval time.Duration
	// IdleTimeout marks the source idle after this long without records;
	// 0 never.
	IdleTimeout time.Duration
}

// Job is a job under construction.
type Job struct {
	name                        string
	parallelism, maxParallelism int
	stateBackend                Config
	checkpoints                 Config
	restart                     Config
	ops                         []*Op
}

// Op is one source, operator or sink of a job.
type Op struct {
	job          *Job
	id, typ, uid string
	inputs       []*Op
	keyBy        string
	partitioning Partitioning
	parallelism  int
	onError      string
	config       Config
	watermarks   *Watermarks
	// per input (index into inputs): its own keyBy or partitioning
	inKeyBy map[int]string
	inPart  map[int]Partitioning
	// side: this *Op is side output side of of (Op.SideOutput), a stream
	// to read, not an operator of the job.
	side string
	of   *Op
}

// New starts a job named name.
func New(name string) *Job { return &Job{name: name} }

// Parallelism sets the job's default parallelism (default 1).
func (j *Job) Parallelism(n int) *Job { j.parallelism = n; return j }

// MaxParallelism sets the job's max parallelism: its number of key groups
// (default 128).
func (j *Job) MaxParallelism(n int) *Job { j.maxParallelism = n; return j }

// StateBackend sets the stateBackend section, e.g. Config{"type": "pebble"}.
func (j *Job) StateBackend(c Config) *Job { j.stateBackend = c; return j }

// Checkpoints sets the checkpoints section, e.g. Config{"interval": time.Second}.
func (j *Job) Checkpoints(c Config) *Job { j.checkpoints = c; return j }

// Restart sets the restart section, e.g. Config{"strategy": "fixed_delay", "attempts": 3}.
func (j *Job) Restart(c Config) *Job { j.restart = c; return j }

// Source adds a source of the registered type typ.
func (j *Job) Source(id, typ string) *Op { return j.add(id, typ, nil) }

// Operator adds an operator of type typ reading inputs.
func (j *Job) Operator(id, typ string, inputs ...*Op) *Op { return j.add(id, typ, inputs) }

// Sink adds a sink of type typ reading inputs.
func (j *Job) Sink(id, typ string, inputs ...*Op) *Op { return j.add(id, typ, inputs) }

func (j *Job) add(id, typ string, inputs []*Op) *Op {
	op := &Op{job: j, id: id, typ: typ, inputs: inputs}
	j.ops = append(j.ops, op)
	return op
}

// Config sets the operator's config, checked against its type's schema.
func (o *Op) Config(c Config) *Op { o.config = c; return o }

// KeyBy partitions the operator's inputs by the expression's value (hash
// partitioning); keyed types need it.
func (o *Op) KeyBy(expr string) *Op { o.keyBy = expr; return o }

// Parallelism sets the operator's parallelism (default: the job's).
func (o *Op) Parallelism(n int) *Op { o.parallelism = n; return o }

// UID names the operator's state in snapshots (default: its id). Keep it
// when the job changes, or savepoints no longer restore its state.
func (o *Op) UID(uid string) *Op { o.uid = uid; return o }

// Partitioning sets how records reach the operator when it has no keyBy.
func (o *Op) Partitioning(p Partitioning) *Op { o.partitioning = p; return o }

// OnError is "fail" (default) or "skip": skip records the operator fails on.
func (o *Op) OnError(mode string) *Op { o.onError = mode; return o }

// Watermarks sets a source's event-time strategy.
func (o *Op) Watermarks(w Watermarks) *Op { o.watermarks = &w; return o }

// InputKeyBy keys input i (0: the first, 1: the second of a two-input
// operator) by its own expression, as `inputs: [{from: a, keyBy: expr}]`
// does: the inputs of a join can name the key differently. It wins over
// KeyBy for that input.
func (o *Op) InputKeyBy(i int, expr string) *Op {
	if o.inKeyBy == nil {
		o.inKeyBy = map[int]string{}
	}
	o.inKeyBy[i] = expr
	return o
}

// InputPartitioning sets the partitioning of input i, e.g. Broadcast for
// the rules input of the broadcast state pattern.
func (o *Op) InputPartitioning(i int, p Partitioning) *Op {
	if o.inPart == nil {
		o.inPart = map[int]Partitioning{}
	}
	o.inPart[i] = p
	return o
}

// ID is the operator's id.
func (o *Op) ID() string { return o.id }

// SideOutput is the stream of o's side output name (one of its type's
// api.OperatorType.SideOutputs), to pass as an input of operators and
// sinks, like Flink's getSideOutput: they receive only that side output's
// records, and o's main output never carries them. A spec writes it as
// `inputs: [<id>.<name>]`. Set nothing on it (UID, Config, ...): it is not
// an operator.
func (o *Op) SideOutput(name string) *Op {
	if o.of != nil {
		o = o.of
	}
	return &Op{job: o.job, id: o.id, side: name, of: o}
}

// ref is how a spec names o as an input.
func (o *Op) ref() string {
	if o.of != nil {
		return o.id + "." + o.side
	}
	return o.id
}

// Spec renders the job as a YAML job spec (what Build parses).
func (j *Job) Spec() ([]byte, error) {
	top := map[string]any{"name": j.name}
	if j.parallelism != 0 {
		top["parallelism"] = j.parallelism
	}
	if j.maxParallelism != 0 {
		top["maxParallelism"] = j.maxParallelism
	}
	for k, c := range map[string]Config{"stateBackend": j.stateBackend, "checkpoints": j.checkpoints, "restart": j.restart} {
		if c != nil {
			top[k] = plain(map[string]any(c))
		}
	}
	var errs []error
	ops := make([]any, 0, len(j.ops))
	for _, o := range j.ops {
		for _, in := range o.inputs {
			if in != nil && in.of != nil && !reflect.DeepEqual(*in, Op{job: in.job, id: in.id, side: in.side, of: in.of}) {
				errs = append(errs, fmt.Errorf("operator %q: side output %q of %q has settings: it is a stream to read, set them on %q itself", o.id, in.side, in.id, in.id))
			}
		}
		m := map[string]any{"id": o.id, "type": o.typ}
		if o.uid != "" {
			m["uid"] = o.uid
		}
		for i := range o.inKeyBy {
			if i < 0 || i >= len(o.inputs) {
				errs = append(errs, fmt.Errorf("operator %q: InputKeyBy(%d, ...): it has %d inputs", o.id, i, len(o.inputs)))
			}
		}
		for i := range o.inPart {
			if i < 0 || i >= len(o.inputs) {
				errs = append(errs, fmt.Errorf("operator %q: InputPartitioning(%d, ...): it has %d inputs", o.id, i, len(o.inputs)))
			}
		}
		if len(o.inputs) > 0 {
			ins := make([]any, len(o.inputs))
			for i, in := range o.inputs {
				switch {
				case in == nil:
					errs = append(errs, fmt.Errorf("operator %q: input %d is nil: pass the *Op that Source or Operator returned", o.id, i))
				case in.job != j:
					errs = append(errs, fmt.Errorf("operator %q: input %q belongs to another job: add it to this one", o.id, in.id))
				case o.inKeyBy[i] != "" || o.inPart[i] != "":
					e := map[string]any{"from": in.ref()}
					if k := o.inKeyBy[i]; k != "" {
						e["keyBy"] = k
					}
					if p := o.inPart[i]; p != "" {
						e["partitioning"] = string(p)
					}
					ins[i] = e
				default:
					ins[i] = in.ref()
				}
			}
			m["inputs"] = ins
		}
		if o.keyBy != "" {
			m["keyBy"] = o.keyBy
		}
		if o.partitioning != "" {
			m["partitioning"] = string(o.partitioning)
		}
		if o.parallelism != 0 {
			m["parallelism"] = o.parallelism
		}
		if o.onError != "" {
			m["onError"] = o.onError
		}
		if o.config != nil {
			m["config"] = plain(map[string]any(o.config))
		}
		if w := o.watermarks; w != nil {
			wm := map[string]any{}
			if w.Timestamp != "" {
				wm["timestamp"] = w.Timestamp
			}
			if w.OutOfOrderness != 0 {
				wm["outOfOrderness"] = w.OutOfOrderness.String()
			}
			if w.Interval != 0 {
				wm["interval"] = w.Interval.String()
			}
			if w.IdleTimeout != 0 {
				wm["idleTimeout"] = w.IdleTimeout.String()
			}
			m["watermarks"] = wm
		}
		ops = append(ops, m)
	}
	top["operators"] = ops
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return yaml.Marshal(top)
}

// Build checks the job against reg's operator types and returns its
// JobGraph; see the package doc.
func (j *Job) Build(reg *api.Registry) (*jobgraphv1.JobGraph, error) {
	if reg == nil {
		return nil, errors.New("jobbuilder: Build needs the operator registry (api.Default for the built-ins)")
	}
	spec, err := j.Spec()
	if err != nil {
		return nil, fmt.Errorf("job %q: %w", j.name, err)
	}
	graph, err := jobspec.Parse(spec, fmt.Sprintf("job %q", j.name), reg, nil)
	var perr *jobspec.Errors
	if errors.As(err, &perr) {
		// The positions are in the rendered YAML, not in the user's code.
		for _, e := range perr.List {
			e.Line, e.Column = 0, 0
		}
		return nil, perr
	}
	return graph, err
}

// MustBuild is Build for jobs known to be valid (tests, examples): it
// panics on error.
func (j *Job) MustBuild(reg *api.Registry) *jobgraphv1.JobGraph {
	g, err := j.Build(reg)
	if err != nil {
		panic(err)
	}
	return g
}

// plain converts config values to what a spec holds: durations as their
// strings, recursively through maps and lists.
func plain(v any) any {
	switch x := v.(type) {
	case time.Duration:
		return x.String()
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plain(e)
		}
		return out
	case Config:
		return plain(map[string]any(x))
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	}
	return v
}
