package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
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
