package runtime

import (
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
	for _, c := range []prometheus.Collector{m.recordsIn, m.recordsOut, m.watermark, m.backpressured} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
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
