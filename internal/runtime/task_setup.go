package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// This file holds a task's setup: its chain of operators, state backends,
// input gates, outputs and restore.

func (t *task) setup() error {
	d, env := t.d, t.env
	if d.GetGraph() == nil || len(d.GetOperators()) == 0 {
		return errors.New("deployment has no graph or no operators")
	}
	if env.Registry == nil || env.Exchange == nil {
		return errors.New("TaskEnv needs a Registry and an Exchange manager")
	}
	g := d.GetGraph()
	t.job = d.GetId().GetJobId()
	t.subtask = int(d.GetId().GetSubtask())
	t.parallelism = int(d.GetParallelism())
	t.maxPar = int(g.GetMaxParallelism())
	if t.maxPar <= 0 {
		t.maxPar = keygroup.DefaultMaxParallelism
	}
	if t.parallelism < 1 || t.subtask < 0 || t.subtask >= t.parallelism {
		return fmt.Errorf("subtask %d out of range for parallelism %d", t.subtask, t.parallelism)
	}
	t.log = env.Logger
	if t.log == nil {
		t.log = slog.Default().With("job", t.job, "attempt", d.GetId().GetAttempt(), "task", d.GetId().GetTask(), "subtask", t.subtask)
	}
	if env.Clock == nil {
		t.env.Clock = wallClock{}
	}
	t.flushInterval = env.FlushInterval
	if t.flushInterval <= 0 {
		t.flushInterval = DefaultFlushInterval
	}
	var inner prometheus.Registerer = prometheus.NewRegistry()
	if env.Metrics != nil {
		inner = env.Metrics
	}
	t.reg = &trackingRegisterer{inner: inner}
	m, err := newTaskMetrics(t.reg, t.job, g.GetName(), d.GetId().GetTask(), t.subtask, time.Now())
	if err != nil {
		return fmt.Errorf("register task metrics: %w", err)
	}
	if env.Sample != nil {
		m.sample = env.Sample
	}
	t.metrics = m
	if t.sb, err = newStateBackend(g); err != nil {
		return err
	}

	vertices := map[string]*jobgraphv1.Vertex{}
	for _, v := range g.GetVertices() {
		vertices[v.GetId()] = v
	}
	// Output partitions first: consumers wait for them to be registered.
	for _, od := range d.GetOutputs() {
		n := int(od.GetSubpartitions())
		if n < 1 {
			return fmt.Errorf("output to %q has %d subpartitions", od.GetDownstreamTask(), n)
		}
		p, err := env.Exchange.CreatePartition(exchange.PartitionID{
			JobID: t.job, Attempt: d.GetId().GetAttempt(), Task: d.GetId().GetTask(),
			Subtask: int32(t.subtask), DownstreamTask: od.GetDownstreamTask(),
		}, n)
		if err != nil {
			return fmt.Errorf("create partition for %q: %w", od.GetDownstreamTask(), err)
		}
		t.parts = append(t.parts, p)
		o := newOutput(t, p, od.GetPartitioning(), n)
		o.side = od.GetSideOutput()
		if od.GetPartitioning() == jobgraphv1.Partitioning_PARTITIONING_HASH {
			dv := vertices[od.GetDownstreamTask()]
			if dv == nil {
				return fmt.Errorf("output to unknown vertex %q", od.GetDownstreamTask())
			}
			prog, err := expression.Compile(od.GetKeyBy())
			if err != nil {
				return fmt.Errorf("keyBy of %q: %w", od.GetDownstreamTask(), err)
			}
			o.keyBy, o.env, o.maxPar = prog, expression.NewEnv(), t.maxPar
			o.keyField, _ = prog.Field()
			o.downstream = int(od.GetDownstreamParallelism())
			if o.downstream < 1 || o.downstream != n {
				return fmt.Errorf("hash output to %q: downstream parallelism %d does not match %d subpartitions", od.GetDownstreamTask(), o.downstream, n)
			}
			o.keyTarget = dv.GetId()
		}
		t.outputs = append(t.outputs, o)
	}

	// Operators of the chain.
	ops := d.GetOperators()
	for i, id := range ops {
		v := vertices[id]
		if v == nil {
			return fmt.Errorf("operator %q is not in the job graph", id)
		}
		vi, err := t.newVertexInfo(v)
		if err != nil {
			return err
		}
		typ, err := env.Registry.LookupKind(v.GetType(), vertexKind(v.GetKind()))
		if err != nil {
			return fmt.Errorf("operator %q: %w", id, err)
		}
		vi.sides = typ.SideOutputs
		vi.state = &operatorState{vi: vi, ops: statebackend.NewOperatorStore(),
			keyable: typ.Kind == api.KindOperator && v.GetKeyBy() != ""}
		if typ.Keyed && v.GetKeyBy() == "" {
			return fmt.Errorf("operator %q: type %q keeps keyed state: give its input a keyBy", id, typ.Name)
		}
		cfg, err := typ.DecodeConfigJSON(v.GetConfig())
		if err != nil {
			return fmt.Errorf("operator %q: config: %w", id, err)
		}
		switch typ.Kind {
		case api.KindSource:
			if i != 0 || len(d.GetInputs()) > 0 {
				return fmt.Errorf("operator %q: a source must head a chain without inputs", id)
			}
			src, err := typ.NewSource(cfg)
			if err != nil {
				return fmt.Errorf("operator %q: %w", id, err)
			}
			t.source, t.srcVI = src, vi
			if t.wmGen, err = newWMGenerator(v.GetWatermarks()); err != nil {
				return fmt.Errorf("operator %q: watermarks: %w", id, err)
			}
		case api.KindOperator:
			op, err := typ.NewOperator(cfg)
			if err != nil {
				return fmt.Errorf("operator %q: %w", id, err)
			}
			l := &opLink{t: t, vi: vi, op: op}
			l.wm, _ = op.(api.WatermarkHandler)
			l.timers, _ = op.(api.TimerHandler)
			l.fire = l.fireTimer
			t.links = append(t.links, l)
		case api.KindSink:
			if i != len(ops)-1 || len(d.GetOutputs()) > 0 {
				return fmt.Errorf("operator %q: a sink must end a chain without outputs", id)
			}
			s, err := typ.NewSink(cfg)
			if err != nil {
				return fmt.Errorf("operator %q: %w", id, err)
			}
			t.sink = &sinkLink{t: t, vi: vi, sink: s}
		default:
			return fmt.Errorf("operator %q: type %q has kind %v", id, typ.Name, typ.Kind)
		}
		t.vertices = append(t.vertices, vi)
	}
	if t.source == nil && len(d.GetInputs()) == 0 {
		return fmt.Errorf("operator %q has no inputs and is not a source", ops[0])
	}

	for _, o := range t.outputs {
		o.keyVertex = t.vertices[len(t.vertices)-1]
	}

	// Checkpoints, and the restored operator state (before Open declares it).
	if err := t.setupCheckpoints(); err != nil {
		return err
	}
	if err := t.prepareRestore(); err != nil {
		return err
	}

	// Wire the chain back to front: the main outputs after the tail, its
	// side outputs to their own edges.
	var mains []api.Collector
	last := t.vertices[len(t.vertices)-1]
	for _, o := range t.outputs {
		if o.side == "" {
			mains = append(mains, o)
			continue
		}
		if !slices.Contains(last.sides, o.side) {
			return fmt.Errorf("output to %q carries side output %q of %q, whose type %q declares none by that name", o.part.ID().DownstreamTask, o.side, last.id, last.v.GetType())
		}
		if last.sideOut == nil {
			last.sideOut = map[string]api.Collector{}
		}
		last.sideOut[o.side] = joinCollectors(last.sideOut[o.side], o)
	}
	var tail api.Collector
	switch {
	case t.sink != nil:
		tail = t.sink
	case len(mains) == 1:
		tail = mains[0]
	case len(mains) > 1:
		tail = fanout(mains)
	default:
		tail = discard{}
	}
	next := tail
	for i := len(t.links) - 1; i >= 0; i-- {
		t.links[i].next = next
		next = t.links[i]
	}
	t.head = next

	// Open operators in chain order.
	vi := 0
	if t.source != nil {
		if err := t.openUser(t.vertices[vi], func(c api.Context) error { return t.source.Open(c) }); err != nil {
			return err
		}
		vi++
	}
	for _, l := range t.links {
		if err := t.openUser(l.vi, l.op.Open); err != nil {
			return err
		}
		if l.keyed = l.vi.state.keyed; l.keyed != nil {
			t.keyedLinks = append(t.keyedLinks, l)
		}
	}
	if t.sink != nil {
		if err := t.openUser(t.sink.vi, t.sink.sink.Open); err != nil {
			return err
		}
	}

	// Input gates.
	for _, in := range d.GetInputs() {
		specs := make([]exchange.ChannelSpec, len(in.GetChannels()))
		for i, ch := range in.GetChannels() {
			specs[i] = exchange.ChannelSpec{Address: ch.GetAddress(), Subpartition: ch.GetSubpartition(), Partition: exchange.PartitionID{
				JobID: t.job, Attempt: d.GetId().GetAttempt(), Task: in.GetUpstreamTask(),
				Subtask: ch.GetUpstreamSubtask(), DownstreamTask: d.GetId().GetTask(),
			}}
		}
		gate, err := env.Exchange.OpenInputGate(t.ctx, specs)
		if err != nil {
			return fmt.Errorf("open input gate from %q: %w", in.GetUpstreamTask(), err)
		}
		t.gates = append(t.gates, &gateState{gate: gate, offset: len(t.wm)})
		for range specs {
			t.wm = append(t.wm, api.NoTimestamp)
			t.input = append(t.input, uint8(in.GetInput()))
		}
		if in.GetInput() == 1 && t.head2 == nil {
			if err := t.setupSecondInput(in.GetUpstreamTask(), in.GetPartitioning() != jobgraphv1.Partitioning_PARTITIONING_HASH); err != nil {
				return err
			}
		} else if in.GetInput() < 0 || in.GetInput() > 1 {
			return fmt.Errorf("input gate from %q feeds input %d; operators have input 0 or 1", in.GetUpstreamTask(), in.GetInput())
		}
	}
	n := len(t.wm)
	t.idle, t.ended, t.recs = make([]bool, n), make([]bool, n), make([]int64, n)
	t.timer = time.NewTimer(time.Hour)
	t.timer.Stop()
	if err := t.setupBarriers(); err != nil {
		return err
	}
	return t.finishRestore()
}

// setupSecondInput wires the second input to the head operator's
// ProcessRecord2.
func (t *task) setupSecondInput(upstream string, unkeyed bool) error {
	if len(t.links) == 0 {
		return fmt.Errorf("input gate from %q feeds a second input, but %q is not an operator", upstream, t.vertices[0].id)
	}
	l := t.links[0]
	two, ok := l.op.(api.TwoInputOperator)
	if !ok {
		return fmt.Errorf("%s: input %q is its second input, but type %q has one input (no ProcessRecord2): list one input less or use a two-input type",
			t.opName(l.vi), upstream, l.vi.v.GetType())
	}
	t.head2 = &opLink2{opLink: l, op2: two, unkeyed: unkeyed}
	return nil
}

func (t *task) newVertexInfo(v *jobgraphv1.Vertex) (*vertexInfo, error) {
	name := t.d.GetGraph().GetName()
	vi := &vertexInfo{v: v, id: v.GetId(), skip: v.GetOnError() == "skip"}
	var err error
	if vi.skipped, err = registerCounter(t.reg, newSkippedCounter(t.job, name, v.GetId(), t.subtask)); err != nil {
		return nil, err
	}
	if vi.metrics, err = newOperatorMetrics(t.reg, t.job, name, v.GetId(), t.subtask); err != nil {
		return nil, err
	}
	return vi, nil
}
