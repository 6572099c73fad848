package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// DefaultFlushInterval is how long a partly filled output buffer may wait
// before it is sent, bounding the latency of low-rate streams.
const DefaultFlushInterval = 100 * time.Millisecond

// DefaultWatermarkInterval is the periodic watermark emission interval of a
// source whose WatermarkStrategy sets none.
const DefaultWatermarkInterval = 200 * time.Millisecond

// TaskEnv is what a TaskManager provides to the subtasks it runs.
type TaskEnv struct {
	Registry *api.Registry
	Exchange *exchange.Manager
	// DataDir is a directory private to this subtask (it exists); each
	// operator of the chain gets a subdirectory named after its id.
	DataDir string
	// Logger carries the subtask's attributes (job, attempt, task,
	// subtask); nil: slog.Default() with them.
	Logger *slog.Logger
	// Metrics is the TaskManager's registry; may be nil (no export).
	Metrics prometheus.Registerer
	// Clock is the processing-time clock given to operators; nil = wall clock.
	Clock api.Clock
	// FlushInterval overrides DefaultFlushInterval when positive.
	FlushInterval time.Duration
	// StateCache is the Pebble block cache shared by every Pebble keyed
	// state backend of the TaskManager (pebble.NewCache; the TaskManager
	// Unrefs it when it stops). Nil: each backend makes its own cache of the
	// job's stateBackend.blockCacheSize (default 64 MiB).
	StateCache *pebble.Cache
	// Control delivers TriggerCheckpoint and NotifyCheckpoint messages from
	// the TaskManager; nil means the subtask gets none.
	Control <-chan any
	// Checkpoints reports the subtask's checkpoint acknowledgements and
	// declines to the JobManager; nil means checkpoints are unsupported.
	Checkpoints CheckpointResponder
	// Notifications delivers checkpoint completions and aborts without ever
	// dropping a completion (the Control mailbox is bounded); nil: only
	// those sent on Control arrive.
	Notifications *Notifications
	// Sample receives the subtask's cumulative busy/idle/backpressured
	// times, record totals and watermark for the TaskManager's heartbeat;
	// nil: none is kept.
	Sample *TaskSample
}

// gateState is one input gate and where its channels start in the task's
// channel numbering.
type gateState struct {
	gate   *exchange.InputGate
	offset int
}

// task is one running subtask. All fields are owned by the task goroutine.
type task struct {
	ctx         context.Context
	d           *clusterv1.TaskDeployment
	env         TaskEnv
	log         *slog.Logger
	job         string
	subtask     int
	parallelism int
	maxPar      int
	err         error

	reg     *trackingRegisterer
	metrics *taskMetrics
	// stateMetrics reports the keyed backends (statemetrics.go).
	stateMetrics *stateCollector

	// chain
	vertices []*vertexInfo
	source   api.Source
	srcVI    *vertexInfo
	links    []*opLink
	sink     *sinkLink
	head     api.Collector
	// head2 receives the second input's records (a two-input head
	// operator's ProcessRecord2); nil for single-input chains.
	head2   api.Collector
	outputs []*output
	parts   []*exchange.ResultPartition
	gates   []*gateState
	wmGen   *wmGenerator

	// inputs: one entry per channel across all gates
	input      []uint8 // which input of the head operator (0, 1) the channel feeds
	wm         []int64
	idle       []bool
	ended      []bool
	recs       []int64
	nEnded     int
	rd         frameReader
	rec        api.Record
	curChannel int
	curRecord  int64
	inWM       bool

	lastWM  int64
	outIdle bool

	// state
	sb         stateBackend
	keyedLinks []*opLink // links with a keyed backend, in chain order
	inTimer    bool      // an OnTimer call is running (for error positions)
	timerAt    api.Timer
	swept      bool // every keyed backend finished a sweep round since the last input

	flushInterval time.Duration
	flushAt       time.Time
	timer         *time.Timer

	// checkpoints and restore
	ck      *checkpointer
	restore *restoreState
	// drainID is the savepoint a source task ended its input for (stop
	// --drain; 0: none); drained is set when it completed.
	drainID int64
	drained bool
	// stopID is the stop-with-savepoint (without drain) a source task took:
	// it emits nothing after the savepoint's barrier and waits to be
	// canceled once the savepoint completed; an abort resumes it.
	stopID int64
	// notifyC wakes the task for Notifications (nil: none); notes is the
	// buffer their take fills.
	notifyC <-chan struct{}
	notes   []NotifyCheckpoint
}

// RunTask runs one subtask until its input ends (nil: FINISHED), ctx is
// canceled (an error wrapping ctx.Err(), i.e. context.Canceled: CANCELED), or
// it fails (any other error: FAILED; the message names the operator and
// subtask, and for record errors the record's position).
func RunTask(ctx context.Context, d *clusterv1.TaskDeployment, env TaskEnv) (err error) {
	t := &task{ctx: ctx, d: d, env: env, lastWM: api.NoTimestamp, curChannel: -1}
	if env.Notifications != nil {
		t.notifyC = env.Notifications.Ready()
	}
	defer func() {
		// Decided before cleanup: releasing the partitions makes consumers
		// fail, which may cancel ctx (the job fails) after this task's own
		// failure.
		canceled := ctx.Err() != nil
		t.stopCheckpoints(err != nil)
		if cerr := t.cleanup(); err == nil {
			err = cerr
		}
		if err != nil && canceled {
			err = fmt.Errorf("task %s (subtask %d of %d) canceled: %w", d.GetId().GetTask(), t.subtask, t.parallelism, ctx.Err())
		}
	}()
	if err := t.setup(); err != nil {
		return fmt.Errorf("deploy task %s (subtask %d of %d): %w", d.GetId().GetTask(), d.GetId().GetSubtask(), d.GetParallelism(), err)
	}
	if t.source != nil {
		return t.runSource()
	}
	return t.runInputs()
}

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

// publishOperators publishes each operator's record counts: an operator's
// records out are what the next one of the chain received; the last one's
// are the task's records out, and a source's its records in.
func (t *task) publishOperators() {
	for i, vi := range t.vertices {
		var out int64
		switch {
		case vi == t.srcVI:
			out = t.metrics.in
		case i+1 < len(t.vertices):
			out = t.vertices[i+1].in
		default:
			out = t.metrics.out
		}
		if vi.metrics != nil {
			vi.metrics.publish(vi.in, out)
		}
	}
}

// publishSlow publishes time and per-operator metrics, at most every
// publishInterval unless final.
func (t *task) publishSlow(now time.Time, final bool) {
	if !final && now.Sub(t.metrics.lastPub) < publishInterval {
		return
	}
	t.metrics.publish()
	t.metrics.publishTimes(now)
	t.publishOperators()
	t.publishStates()
}

// openUser opens one operator with its Context, turning panics into errors.
func (t *task) openUser(vi *vertexInfo, open func(api.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: open: panic: %v", t.opName(vi), p)
		}
	}()
	dir := ""
	if t.env.DataDir != "" {
		dir = filepath.Join(t.env.DataDir, vi.id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("%s: create data dir: %w", t.opName(vi), err)
		}
	}
	c := &opContext{
		info: api.TaskInfo{JobID: t.job, JobName: t.d.GetGraph().GetName(), OperatorID: vi.id, OperatorUID: vi.v.GetUid(),
			SubtaskIndex: t.subtask, Parallelism: t.parallelism, MaxParallelism: t.maxPar, Attempt: int(t.d.GetId().GetAttempt())},
		logger:  t.log.With("operator", vi.id),
		metrics: prometheus.WrapRegistererWith(metricLabels(t.job, t.d.GetGraph().GetName(), "operator", vi.id, "subtask", fmt.Sprint(t.subtask)), t.reg),
		clock:   t.env.Clock,
		done:    t.ctx.Done(),
		dataDir: dir,
		t:       t,
		state:   vi.state,
		opening: true,
	}
	if c.info.OperatorUID == "" {
		c.info.OperatorUID = vi.id
	}
	err = open(c)
	c.opening = false
	if c.stateErr != nil {
		return fmt.Errorf("%s: open keyed state: %w", t.opName(vi), c.stateErr)
	}
	if err != nil {
		return fmt.Errorf("%s: open: %w", t.opName(vi), err)
	}
	return nil
}

// fail records the task's first failure.
func (t *task) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

func (t *task) canceled() bool {
	select {
	case <-t.ctx.Done():
		return true
	default:
		return false
	}
}

// bufferOpened arms the flush deadline when the first buffer opens.
func (t *task) bufferOpened() {
	if t.flushAt.IsZero() {
		t.flushAt = time.Now().Add(t.flushInterval)
	}
}

func (t *task) flushOutputs() {
	for _, o := range t.outputs {
		o.flush()
	}
	t.flushAt = time.Time{}
}

// runTimers fires what is due: processing-time timers of keyed operators,
// buffer flushes and (sources) periodic watermarks and idleness. Later:
// checkpoint triggers from the control mailbox.
func (t *task) runTimers(now time.Time) {
	t.publishSlow(now, false)
	t.advanceProcessingTime()
	if t.err != nil {
		return
	}
	if !t.flushAt.IsZero() && !now.Before(t.flushAt) {
		t.flushOutputs()
	}
	if g := t.wmGen; g != nil && t.drainID == 0 && t.stopID == 0 && !now.Before(g.next) {
		g.tick(t, now)
	}
	t.tickBarriers(now)
}

// nextDeadline is the earliest of the armed timers and extra (zero = none).
func (t *task) nextDeadline(extra time.Time) time.Time {
	d := extra
	now := time.Now()
	wmTick := t.wmGen.nextTick()
	if t.drainID != 0 || t.stopID != 0 {
		wmTick = time.Time{} // the final watermark was emitted, or the source is stopped
	}
	for _, x := range [...]time.Time{t.flushAt, wmTick, t.nextProcessingTimer(now), t.barrierDeadline(now)} {
		if !x.IsZero() && (d.IsZero() || x.Before(d)) {
			d = x
		}
	}
	return d
}

// armTimer sets the task timer to deadline and returns its channel (nil when
// there is no deadline).
func (t *task) armTimer(now, deadline time.Time) <-chan time.Time {
	if deadline.IsZero() {
		return nil
	}
	t.timer.Reset(max(deadline.Sub(now), 0))
	return t.timer.C
}

func (t *task) stopTimer() {
	t.timer.Stop()
}

// runSource is the mailbox loop of a source task.
func (t *task) runSource() error {
	out := &sourceOutput{t: t}
	var waitUntil time.Time
	if t.wmGen != nil {
		t.wmGen.start(time.Now())
	}
	for {
		if t.canceled() {
			return t.ctx.Err()
		}
		now := time.Now()
		t.runTimers(now)
		t.drainControl()
		if t.err != nil {
			return t.err
		}
		if t.drained {
			return t.finish()
		}
		if t.drainID == 0 && t.stopID == 0 && (waitUntil.IsZero() || !now.Before(waitUntil)) {
			st, err := t.callNext(out)
			t.metrics.publish()
			if t.err != nil {
				return t.err
			}
			if err != nil {
				var re recordError
				t.recordFailed(t.srcVI, err, asRecordError(err, &re))
				if t.err != nil {
					return t.err
				}
				continue
			}
			if st.End {
				return t.finish()
			}
			waitUntil = st.WaitUntil
			if waitUntil.IsZero() || !waitUntil.After(now) {
				waitUntil = time.Time{}
				continue
			}
		}
		if t.drainID != 0 || t.stopID != 0 {
			waitUntil = time.Time{} // drained or stopped: wait for the savepoint's completion only
		}
		c := t.armTimer(now, t.nextDeadline(waitUntil))
		idleFrom := time.Now()
		select {
		case <-t.ctx.Done():
		case <-c:
		case m := <-t.env.Control:
			t.handleControl(m)
		case <-t.notifyC:
			t.takeNotifications()
		}
		t.metrics.idleNs += time.Since(idleFrom).Nanoseconds()
		t.stopTimer()
	}
}

func (t *task) callNext(out *sourceOutput) (st api.SourceStatus, err error) {
	defer t.recoverUser(t.srcVI)
	return t.source.Next(out)
}

// runInputs is the mailbox loop of a task fed by input gates.
func (t *task) runInputs() error {
	var cases []reflect.SelectCase
	t.replayInFlight()
	if t.err != nil {
		return t.err
	}
	for {
		if t.canceled() {
			return t.ctx.Err()
		}
		now := time.Now()
		t.runTimers(now)
		t.drainControl()
		if t.err != nil {
			return t.err
		}
		progressed := false
		for _, gs := range t.gates {
			ev, ok, err := gs.gate.Poll()
			if err != nil {
				if errors.Is(err, exchange.ErrPartitionReleased) && t.awaitCancel(releasedGrace) {
					return t.ctx.Err()
				}
				return fmt.Errorf("task %s (subtask %d of %d): input: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, err)
			}
			if !ok {
				continue
			}
			progressed = true
			ch := gs.offset + ev.Channel
			switch {
			case ev.End:
				t.channelEnded(ch)
				t.channelEndBarrier(ch)
			case isControlFrame(ev.Frame):
				t.controlFrame(ch, ev.Frame, ev.Overtaken)
				gs.gate.Recycle(ev.Channel, ev.Frame)
			default:
				t.metrics.bytesIn += int64(len(ev.Frame))
				t.dataBuffer(ch, ev.Frame)
				t.processFrame(ch, ev.Frame)
				gs.gate.Recycle(ev.Channel, ev.Frame)
			}
			if t.err != nil {
				return t.err
			}
			if t.nEnded == len(t.wm) {
				t.metrics.publish()
				return t.finish()
			}
		}
		t.metrics.publish()
		if progressed {
			t.inputProcessed()
			continue
		}
		// Idle: sweep expired state a step at a time, polling the inputs
		// between steps, until a round is complete.
		if t.sweepIdle() {
			continue
		}
		if t.err != nil {
			return t.err
		}
		// Nothing ready: sleep until a gate signals, a timer is due or the
		// task is canceled.
		tc := t.armTimer(now, t.nextDeadline(time.Time{}))
		idleFrom := time.Now()
		switch len(t.gates) {
		case 1:
			select {
			case <-t.ctx.Done():
			case <-tc:
			case <-t.gates[0].gate.Available():
			case m := <-t.env.Control:
				t.handleControl(m)
			case <-t.notifyC:
				t.takeNotifications()
			}
		case 2:
			select {
			case <-t.ctx.Done():
			case <-tc:
			case <-t.gates[0].gate.Available():
			case <-t.gates[1].gate.Available():
			case m := <-t.env.Control:
				t.handleControl(m)
			case <-t.notifyC:
				t.takeNotifications()
			}
		default:
			cases = cases[:0]
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.ctx.Done())})
			if t.env.Control != nil {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.env.Control)})
			}
			notifyAt := -1
			if t.notifyC != nil {
				notifyAt = len(cases)
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.notifyC)})
			}
			if tc != nil {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(tc)})
			}
			for _, gs := range t.gates {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(gs.gate.Available())})
			}
			i, v, ok := reflect.Select(cases)
			switch {
			case i == 1 && ok && t.env.Control != nil:
				t.handleControl(v.Interface())
			case i == notifyAt:
				t.takeNotifications()
			}
		}
		t.metrics.idleNs += time.Since(idleFrom).Nanoseconds()
		t.stopTimer()
	}
}

// releasedGrace is how long a task whose producer released its partition
// early waits for its own cancellation before it reports the lost input as
// its failure.
const releasedGrace = 2 * time.Second

// awaitCancel waits up to d for the task's cancellation and reports
// whether it came. A producer releases its partition before the end
// reached its consumers only when it is canceled or fails; in both cases
// the JobManager cancels the consumers too (a job stop cancels every
// subtask with one RPC each, which arrive in any order), and the consumer
// ends CANCELED rather than reporting the producer's end as a failure of
// its own.
func (t *task) awaitCancel(d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-t.ctx.Done():
		return true
	case <-tm.C:
		return false
	}
}

// processFrame decodes one exchange buffer of channel ch and runs its
// records and events through the chain.
func (t *task) processFrame(ch int, frame []byte) {
	t.rd.reset(frame)
	head := t.head
	if t.input[ch] == 1 {
		head = t.head2
	}
	for {
		kind, ts, idle, err := t.rd.next(&t.rec)
		if err != nil {
			t.fail(fmt.Errorf("task %s (subtask %d of %d): channel %d after record %d: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, ch, t.recs[ch], err))
			return
		}
		switch kind {
		case evNone:
			return
		case evRecord:
			t.recs[ch]++
			t.curChannel, t.curRecord = ch, t.recs[ch]
			t.metrics.in++
			head.Collect(t.rec)
			if t.err != nil {
				return
			}
		case evWatermark:
			if ts > t.wm[ch] {
				t.wm[ch] = ts
				t.advance()
			}
		case evStatus:
			if t.idle[ch] != idle {
				t.idle[ch] = idle
				t.advance()
			}
		}
	}
}

func (t *task) channelEnded(ch int) {
	t.ended[ch] = true
	t.nEnded++
	t.wm[ch] = api.MaxWatermark
	t.advance()
}

// advance recomputes the input watermark (minimum over channels that are
// neither idle nor ended; ended channels count as MaxWatermark) and the
// output stream status (idle when every live channel is idle).
func (t *task) advance() {
	lo, live, active := api.MaxWatermark, 0, 0
	for i, w := range t.wm {
		if t.ended[i] {
			continue
		}
		live++
		if t.idle[i] {
			continue
		}
		active++
		if w < lo {
			lo = w
		}
	}
	if live > 0 && active == 0 {
		if !t.outIdle {
			t.setOutIdle(true)
		}
		return
	}
	if t.outIdle {
		t.setOutIdle(false)
	}
	if lo > t.lastWM {
		t.processWatermark(lo)
	}
}

func (t *task) setOutIdle(idle bool) {
	t.outIdle = idle
	for _, o := range t.outputs {
		o.status(idle)
	}
}

// processWatermark runs a new watermark through the chain and the outputs.
func (t *task) processWatermark(ts int64) {
	t.lastWM = ts
	t.inWM = true
	defer func() { t.inWM = false }()
	for _, l := range t.links {
		if l.keyed != nil {
			// Timers first: the operator and downstream see the watermark
			// after everything it made due.
			t.advanceEventTime(l, ts)
			if t.err != nil {
				return
			}
		}
		if l.wm != nil {
			t.callWatermark(l, ts)
			if t.err != nil {
				return
			}
		}
	}
	for _, o := range t.outputs {
		o.watermark(ts)
	}
	t.metrics.watermark.Set(float64(ts) / 1000)
	t.metrics.sample.watermark.Store(ts)
}

func (t *task) callWatermark(l *opLink, ts int64) {
	defer t.recoverUser(l.vi)
	if err := l.wm.ProcessWatermark(ts, l.next); err != nil {
		t.fail(fmt.Errorf("%s: watermark %d: %w", t.opName(l.vi), ts, err))
	}
}

// finish ends a task whose input ended: final watermark, Finish in chain
// order, flush, finish the partitions and wait until consumers got the end.
func (t *task) finish() error {
	t.declineRemaining()
	if t.outIdle {
		t.setOutIdle(false)
	}
	if t.lastWM < api.MaxWatermark {
		t.processWatermark(api.MaxWatermark)
	}
	if t.err != nil {
		return t.err
	}
	t.curChannel, t.curRecord = -1, 0
	for _, l := range t.links {
		t.callFinish(l)
		if t.err != nil {
			return t.err
		}
	}
	if t.sink != nil {
		t.callSinkFinish()
		if t.err != nil {
			return t.err
		}
	}
	t.flushOutputs()
	t.publishSlow(time.Now(), true)
	if t.err != nil {
		return t.err
	}
	for _, p := range t.parts {
		if err := p.Finish(); err != nil {
			return fmt.Errorf("task %s (subtask %d of %d): finish partition: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, err)
		}
	}
	for _, p := range t.parts {
		select {
		case <-p.Consumed():
		case <-t.ctx.Done():
			return t.ctx.Err()
		}
	}
	return t.awaitNotifications()
}

func (t *task) callFinish(l *opLink) {
	defer t.recoverUser(l.vi)
	if err := l.op.Finish(l.next); err != nil {
		t.fail(fmt.Errorf("%s: finish: %w", t.opName(l.vi), err))
	}
}

func (t *task) callSinkFinish() {
	defer t.recoverUser(t.sink.vi)
	if err := t.sink.sink.Finish(); err != nil {
		t.fail(fmt.Errorf("%s: finish: %w", t.opName(t.sink.vi), err))
	}
}

// cleanup releases everything the task holds; it runs on every exit.
func (t *task) cleanup() error {
	for _, p := range t.parts {
		p.Release()
	}
	for _, gs := range t.gates {
		_ = gs.gate.Close()
	}
	var errs []error
	closeUser := func(vi *vertexInfo, c func() error) {
		defer func() {
			if p := recover(); p != nil {
				errs = append(errs, fmt.Errorf("%s: close: panic: %v", t.opName(vi), p))
			}
		}()
		if err := c(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close: %w", t.opName(vi), err))
		}
	}
	if t.source != nil {
		closeUser(t.srcVI, t.source.Close)
	}
	for _, l := range t.links {
		closeUser(l.vi, l.op.Close)
	}
	if t.sink != nil {
		closeUser(t.sink.vi, t.sink.sink.Close)
	}
	errs = append(errs, t.closeStates()...)
	if t.metrics != nil {
		t.publishSlow(time.Now(), true)
	}
	if t.reg != nil {
		t.reg.unregisterAll()
	}
	if t.timer != nil {
		t.timer.Stop()
	}
	return errors.Join(errs...)
}

// vertexKind maps a graph vertex's kind to the registry's.
func vertexKind(k jobgraphv1.VertexKind) api.Kind {
	switch k {
	case jobgraphv1.VertexKind_VERTEX_KIND_SOURCE:
		return api.KindSource
	case jobgraphv1.VertexKind_VERTEX_KIND_SINK:
		return api.KindSink
	}
	return api.KindOperator
}
