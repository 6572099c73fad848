package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// SideOutput implements api.SideOutputContext: the collector of the
// operator's declared side output name (records dropped when no edge
// reads it), nil for an undeclared name.
func (c *opContext) SideOutput(name string) api.Collector {
	if c.state == nil {
		return nil
	}
	vi := c.state.vi
	if !slices.Contains(vi.sides, name) {
		return nil
	}
	if o := vi.sideOut[name]; o != nil {
		return o
	}
	return discard{}
}

var (
	_ api.SideOutputContext    = (*opContext)(nil)
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

// taskMetrics are the per-subtask runtime metrics. Counts and times are
// accumulated in plain fields on the task goroutine and published in
// batches: records in/out after every batch, the rest at most every
// publishInterval.
type taskMetrics struct {
	recordsIn     prometheus.Counter
	recordsOut    prometheus.Counter
	watermark     prometheus.Gauge
	backpressured prometheus.Counter
	idle          prometheus.Counter
	busy          prometheus.Counter
	bytesInCtr    prometheus.Counter
	bytesOutCtr   prometheus.Counter

	in, out       int64 // unpublished counts
	pubIn, pubOut int64
	// bytesIn and bytesOut: exchange buffer bytes received and emitted.
	bytesIn, bytesOut       int64
	pubBytesIn, pubBytesOut int64

	// idleNs and bpNs: time waiting for input (or, in a source, for its
	// next batch) and for output buffers since lastPub; the rest of the
	// wall time is busy.
	idleNs, bpNs int64
	lastPub      time.Time

	// sample mirrors the published totals for the TaskManager's heartbeat
	// (TaskEnv.Sample); stored when publishing, never per record.
	sample *TaskSample
	// busyTotal, idleTotal and bpTotal: published times since the start.
	busyTotal, idleTotal, bpTotal int64
}

// publishInterval bounds how often time and per-operator metrics reach
// their collectors.
const publishInterval = 100 * time.Millisecond

// metricLabels are the labels of every job-scoped series: flow_job (the id)
// and flow_job_name, never "job", which Prometheus owns (the scrape job).
func metricLabels(jobID, jobName string, kv ...string) prometheus.Labels {
	l := prometheus.Labels{"flow_job": jobID, "flow_job_name": jobName}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return l
}

// registerCounter registers c, or returns the counter already registered
// under the same series: a subtask of the previous attempt that is still
// being canceled on this TaskManager holds it, and the new one continues it.
func registerCounter(reg prometheus.Registerer, c prometheus.Counter) (prometheus.Counter, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if x, ok := are.ExistingCollector.(prometheus.Counter); ok {
			return x, nil
		}
		return nil, fmt.Errorf("a collector of another type is registered as %v", c.Desc())
	}
	return c, err
}

func newTaskMetrics(reg prometheus.Registerer, job, jobName, task string, subtask int, now time.Time) (*taskMetrics, error) {
	labels := metricLabels(job, jobName, "task", task, "subtask", strconv.Itoa(subtask))
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	m := &taskMetrics{lastPub: now, sample: NewTaskSample()}
	var errs []error
	for _, c := range []struct {
		dst        *prometheus.Counter
		name, help string
	}{
		{&m.recordsIn, "flow_task_records_in_total", "Records a subtask received (from its inputs or its source)."},
		{&m.recordsOut, "flow_task_records_out_total", "Records a subtask emitted to its outputs or wrote to its sink."},
		{&m.backpressured, "flow_task_backpressured_seconds_total", "Time a subtask waited for output buffers (backpressure)."},
		{&m.idle, "flow_task_idle_seconds_total", "Time a subtask waited for input (a source: for its next batch)."},
		{&m.busy, "flow_task_busy_seconds_total", "Time a subtask was neither idle nor backpressured: busy + idle + backpressured is the wall time."},
		{&m.bytesInCtr, "flow_task_bytes_in_total", "Bytes of exchange buffers a subtask received from its inputs (local or remote)."},
		{&m.bytesOutCtr, "flow_task_bytes_out_total", "Bytes of exchange buffers a subtask emitted to its outputs."},
	} {
		got, err := registerCounter(reg, counter(c.name, c.help))
		*c.dst = got
		errs = append(errs, err)
	}
	m.watermark = prometheus.NewGauge(prometheus.GaugeOpts{Name: "flow_task_watermark_seconds",
		Help: "Current event-time watermark of a subtask, in seconds since the epoch.", ConstLabels: labels})
	err := reg.Register(m.watermark)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		g, ok := are.ExistingCollector.(prometheus.Gauge)
		if !ok {
			err = errors.New("a collector of another type is registered as flow_task_watermark_seconds")
		} else {
			m.watermark, err = g, nil
		}
	}
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("task metrics: %w", err)
	}
	return m, nil
}

func (m *taskMetrics) publish() {
	if d := m.in - m.pubIn; d > 0 {
		m.recordsIn.Add(float64(d))
		m.pubIn = m.in
		m.sample.recordsIn.Store(m.in)
	}
	if d := m.out - m.pubOut; d > 0 {
		m.recordsOut.Add(float64(d))
		m.pubOut = m.out
		m.sample.recordsOut.Store(m.out)
	}
}

// publishTimes publishes idle, backpressured and busy time up to now, and
// the byte counts.
func (m *taskMetrics) publishTimes(now time.Time) {
	if d := m.bytesIn - m.pubBytesIn; d > 0 {
		m.bytesInCtr.Add(float64(d))
		m.pubBytesIn = m.bytesIn
	}
	if d := m.bytesOut - m.pubBytesOut; d > 0 {
		m.bytesOutCtr.Add(float64(d))
		m.pubBytesOut = m.bytesOut
	}
	wall := now.Sub(m.lastPub).Nanoseconds()
	if wall <= 0 {
		return
	}
	m.idle.Add(float64(m.idleNs) / 1e9)
	m.backpressured.Add(float64(m.bpNs) / 1e9)
	m.idleTotal += m.idleNs
	m.bpTotal += m.bpNs
	if busy := wall - m.idleNs - m.bpNs; busy > 0 {
		m.busy.Add(float64(busy) / 1e9)
		m.busyTotal += busy
	}
	m.sample.idleNs.Store(m.idleTotal)
	m.sample.bpNs.Store(m.bpTotal)
	m.sample.busyNs.Store(m.busyTotal)
	m.idleNs, m.bpNs, m.lastPub = 0, 0, now
}

// operatorMetrics count the records into and out of one operator of a
// chain.
type operatorMetrics struct {
	recordsIn, recordsOut prometheus.Counter
	pubIn, pubOut         int64
}

func newOperatorMetrics(reg prometheus.Registerer, job, jobName, operator string, subtask int) (*operatorMetrics, error) {
	labels := metricLabels(job, jobName, "operator", operator, "subtask", strconv.Itoa(subtask))
	in, err1 := registerCounter(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_operator_records_in_total",
		Help: "Records an operator received (a source: none).", ConstLabels: labels}))
	out, err2 := registerCounter(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_operator_records_out_total",
		Help: "Records an operator emitted (a sink: records written).", ConstLabels: labels}))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("operator %q metrics: %w", operator, err)
	}
	return &operatorMetrics{recordsIn: in, recordsOut: out}, nil
}

func (m *operatorMetrics) publish(in, out int64) {
	if d := in - m.pubIn; d > 0 {
		m.recordsIn.Add(float64(d))
		m.pubIn = in
	}
	if d := out - m.pubOut; d > 0 {
		m.recordsOut.Add(float64(d))
		m.pubOut = out
	}
}

func newSkippedCounter(job, jobName, operator string, subtask int) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_operator_records_skipped_total",
		Help:        "Records dropped because they failed in an operator whose on_error is skip.",
		ConstLabels: metricLabels(job, jobName, "operator", operator, "subtask", strconv.Itoa(subtask))})
}
