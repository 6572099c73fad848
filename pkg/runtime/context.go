package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// opContext is the api.Context of one operator instance.
type opContext struct {
	info    api.TaskInfo
	logger  *slog.Logger
	metrics prometheus.Registerer
	clock   api.Clock
	done    <-chan struct{}
	dataDir string

	t     *task
	state *operatorState
	// opening: Open is running, the only time a keyed backend is created.
	// stateErr: creating it failed (reported after Open returns).
	opening  bool
	stateErr error
}

func (c *opContext) Info() api.TaskInfo             { return c.info }
func (c *opContext) Logger() *slog.Logger           { return c.logger }
func (c *opContext) Metrics() prometheus.Registerer { return c.metrics }
func (c *opContext) Clock() api.Clock               { return c.clock }
func (c *opContext) Done() <-chan struct{}          { return c.done }
func (c *opContext) DataDir() string                { return c.dataDir }

// keyedBackend returns the operator's keyed backend, creating it on the
// first call during Open. It is nil for an operator that is not on a keyed
// stream, after a failed creation, and when first asked for after Open.
func (c *opContext) keyedBackend() statebackend.Backend {
	st := c.state
	if st == nil || !st.keyable {
		return nil
	}
	if st.keyed == nil && c.opening && c.stateErr == nil {
		st.keyed, c.stateErr = c.t.openKeyedBackend(st)
	}
	return st.keyed
}

// KeyedStateStore implements api.KeyedStateContext: the operator's keyed
// backend (nil for an operator that is not on a keyed stream). Call it in
// Open.
func (c *opContext) KeyedStateStore() api.KeyedStateStore {
	if b := c.keyedBackend(); b != nil {
		return b
	}
	return nil
}

// TimerService implements api.KeyedStateContext: the same backend.
func (c *opContext) TimerService() api.TimerService {
	if b := c.keyedBackend(); b != nil {
		return b
	}
	return nil
}

// OperatorStateStore implements api.OperatorStateContext.
func (c *opContext) OperatorStateStore() api.OperatorStateStore {
	if c.state == nil {
		return nil
	}
	return c.state.ops
}

var (
	_ api.Context              = (*opContext)(nil)
	_ api.KeyedStateContext    = (*opContext)(nil)
	_ api.OperatorStateContext = (*opContext)(nil)
)

// trackingRegisterer remembers what was registered through it so the task can
// unregister everything when it ends (a restarted task registers again).
type trackingRegisterer struct {
	inner prometheus.Registerer
	mu    sync.Mutex
	regs  []prometheus.Collector
}

func (r *trackingRegisterer) Register(c prometheus.Collector) error {
	if err := r.inner.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	r.regs = append(r.regs, c)
	r.mu.Unlock()
	return nil
}

func (r *trackingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *trackingRegisterer) Unregister(c prometheus.Collector) bool {
	r.mu.Lock()
	for i, x := range r.regs {
		if x == c {
			r.regs = append(r.regs[:i], r.regs[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	return r.inner.Unregister(c)
}

func (r *trackingRegisterer) unregisterAll() {
	r.mu.Lock()
	regs := r.regs
	r.regs = nil
	r.mu.Unlock()
	for _, c := range regs {
		r.inner.Unregister(c)
	}
}

// taskMetrics are the per-subtask runtime metrics. Counts are accumulated in
// plain fields on the task goroutine and published in batches.
type taskMetrics struct {
	recordsIn     prometheus.Counter
	recordsOut    prometheus.Counter
	watermark     prometheus.Gauge
	backpressured prometheus.Counter

	in, out       int64 // unpublished counts
	pubIn, pubOut int64
}

func newTaskMetrics(reg prometheus.Registerer, job, task string, subtask int) (*taskMetrics, error) {
	labels := prometheus.Labels{"job": job, "task": task, "subtask": strconv.Itoa(subtask)}
	m := &taskMetrics{
		recordsIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_task_records_in_total",
			Help: "Records a subtask received (from its inputs or its source).", ConstLabels: labels}),
		recordsOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_task_records_out_total",
			Help: "Records a subtask emitted to its outputs or wrote to its sink.", ConstLabels: labels}),
		watermark: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flow_task_watermark_ms",
			Help: "Current event-time watermark of a subtask in milliseconds since the epoch.", ConstLabels: labels}),
		backpressured: prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_task_backpressured_seconds_total",
			Help: "Time a subtask waited for output buffers (backpressure).", ConstLabels: labels}),
	}
	// A subtask of the previous attempt that is still being canceled on
	// this TaskManager holds the same series: continue its collectors.
	reuse := func(c prometheus.Collector) (prometheus.Collector, error) {
		err := reg.Register(c)
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector, nil
		}
		return c, err
	}
	var errs []error
	in, err1 := reuse(m.recordsIn)
	out, err2 := reuse(m.recordsOut)
	wm, err3 := reuse(m.watermark)
	bp, err4 := reuse(m.backpressured)
	errs = append(errs, err1, err2, err3, err4)
	var ok1, ok2, ok3, ok4 bool
	m.recordsIn, ok1 = in.(prometheus.Counter)
	m.recordsOut, ok2 = out.(prometheus.Counter)
	m.watermark, ok3 = wm.(prometheus.Gauge)
	m.backpressured, ok4 = bp.(prometheus.Counter)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("task metrics: %w", err)
	}
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, errors.New("task metrics: a collector of another type is registered under a task metric name")
	}
	return m, nil
}

func (m *taskMetrics) publish() {
	if d := m.in - m.pubIn; d > 0 {
		m.recordsIn.Add(float64(d))
		m.pubIn = m.in
	}
	if d := m.out - m.pubOut; d > 0 {
		m.recordsOut.Add(float64(d))
		m.pubOut = m.out
	}
}

func newSkippedCounter(job, operator string, subtask int) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_operator_records_skipped_total",
		Help:        "Records dropped because they failed in an operator whose on_error is skip.",
		ConstLabels: prometheus.Labels{"job": job, "operator": operator, "subtask": strconv.Itoa(subtask)}})
}
