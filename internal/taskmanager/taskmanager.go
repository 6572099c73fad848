package taskmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/internal/fencing"
	"github.com/flowrt/flow/internal/rpcerr"
	"github.com/flowrt/flow/internal/runtime"
	"github.com/flowrt/flow/pkg/api"
	statepebble "github.com/flowrt/flow/pkg/statebackend/pebble"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// RunFunc runs one subtask; see runtime.RunTask for the contract.
type RunFunc func(ctx context.Context, d *clusterv1.TaskDeployment, env runtime.TaskEnv) error

// Options configure a TaskManager. Zero values take the documented defaults.
type Options struct {
	// ID identifies the TaskManager to the JobManager. Default: a random id.
	ID string
	// JobManager is the JobManager's RPC address (required), or, with
	// standby JobManagers (high availability), a comma-separated list of
	// all of them: the TaskManager registers with the one that leads,
	// trying each in turn.
	JobManager string
	// Slots offered to the JobManager. Default 4.
	Slots int
	// DataDir holds the subtasks' private directories (required).
	DataDir string
	// HTTPAddress is the address of the TaskManager's HTTP endpoint
	// (/metrics, /readyz), reported to the JobManager for display
	// (flowctl taskmanagers). Default: none.
	HTTPAddress string
	// StateMemory is the memory budget of the TaskManager's Pebble state
	// backends: one block cache shared by all of them is sized from it.
	// Default 512 MiB.
	StateMemory int64
	// ShutdownTimeout bounds how long Run waits for canceled tasks at exit.
	// Default 10s.
	ShutdownTimeout time.Duration
	// Registry of operator types. Default api.Default.
	Registry *api.Registry
	// Run executes a subtask. Default runtime.RunTask.
	Run     RunFunc
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Exchange options (SelfAddress is set by SetAddress).
	Exchange exchange.Options
	// DialOptions for the connection to the JobManager. Default: insecure
	// credentials. The connection's reconnection backoff is capped at
	// maxConnectBackoff unless these set their own.
	DialOptions []grpc.DialOption
}

func (o *Options) ensureDefaults() {
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = fmt.Sprintf("tm-%s-%s", host, randomID(3))
	}
	if o.Slots <= 0 {
		o.Slots = 4
	}
	if o.StateMemory <= 0 {
		o.StateMemory = 512 << 20
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Registry == nil {
		o.Registry = api.Default
	}
	if o.Run == nil {
		o.Run = runtime.RunTask
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DialOptions == nil {
		o.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
}

// TaskManager offers slots to a JobManager and runs the subtasks deployed
// to it. It serves TaskExecutorService and the data exchange.
type TaskManager struct {
	clusterv1.UnimplementedTaskExecutorServiceServer

	opts     Options
	log      *slog.Logger
	exchange *exchange.Manager
	// endpoints are the JobManagers (one, or the leader and its standbys).
	endpoints []*endpoint

	// base is canceled when the TaskManager shuts down; tasks derive from it.
	base       context.Context
	cancelBase context.CancelFunc

	// stateCache is the block cache shared by every Pebble state backend.
	stateCache *statepebble.Cache
	// cacheMetrics report stateCache (released before it is).
	cacheMetrics *runtime.StateCacheMetrics

	mu      sync.Mutex
	address string
	link    link // registration with the JobManager, for Ready
	// cur is the endpoint registered with (or being tried).
	cur int
	// jobManager is the JobManager this TaskManager is registered with
	// (the fencing token its calls must carry), leaderEpoch the highest
	// leader epoch seen (internal/fencing).
	jobManager  fencing.Token
	leaderEpoch uint64
	tasks       map[taskKey]*task
	stopping    bool
	wg          sync.WaitGroup

	registered prometheus.Gauge
	tasksGauge prometheus.GaugeFunc
	deployed   prometheus.Counter
	failed     prometheus.Counter
}

// link is the TaskManager's standing with its JobManager.
type link struct {
	registered bool
	lastOK     time.Time     // the last answered registration or heartbeat
	timeout    time.Duration // the JobManager's heartbeat timeout
	lastErr    string        // why the last call failed, for Ready's message
}

// ErrNotReady is matched by Ready's error.
var ErrNotReady = errors.New("taskmanager not ready")

type taskKey struct {
	job     string
	attempt int32
	task    string
	subtask int32
}

func keyOf(id *clusterv1.TaskID) taskKey {
	return taskKey{id.GetJobId(), id.GetAttempt(), id.GetTask(), id.GetSubtask()}
}

type task struct {
	id     *clusterv1.TaskID
	cancel context.CancelFunc
	done   chan struct{}
	// control is the task's mailbox for checkpoint triggers
	// (runtime.TriggerCheckpoint); notes carries completions and aborts.
	control chan any
	notes   *runtime.Notifications
	// sample is read by the heartbeat loop (the task publishes into it).
	sample *runtime.TaskSample
}

// New builds a TaskManager. Call Register on a gRPC server, SetAddress with
// the address the server listens on, then Run.
func New(opts Options) (*TaskManager, error) {
	opts.ensureDefaults()
	if opts.JobManager == "" {
		return nil, errors.New("taskmanager: the JobManager address is required: set --jobmanager HOST:PORT")
	}
	if opts.DataDir == "" {
		return nil, errors.New("taskmanager: data dir is required: set --data-dir")
	}
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "tasks"), 0o755); err != nil {
		return nil, fmt.Errorf("taskmanager: create data dir: %w", err)
	}
	xopts := opts.Exchange
	if xopts.Logger == nil {
		xopts.Logger = opts.Logger
	}
	if xopts.Metrics == nil {
		xopts.Metrics = opts.Metrics
	}
	xm, err := exchange.NewManager(xopts)
	if err != nil {
		return nil, fmt.Errorf("taskmanager: %w", err)
	}
	endpoints, err := dialJobManagers(opts.JobManager, append([]grpc.DialOption{connectParams}, opts.DialOptions...))
	if err != nil {
		xm.Close()
		return nil, err
	}
	base, cancel := context.WithCancel(context.Background())
	cacheBytes, _ := statepebble.SplitBudget(opts.StateMemory, opts.Slots)
	tm := &TaskManager{
		opts: opts, log: opts.Logger.With("taskmanager", opts.ID), exchange: xm,
		stateCache: statepebble.NewCache(cacheBytes),
		endpoints:  endpoints,
		base:       base, cancelBase: cancel,
		tasks: map[taskKey]*task{},
		registered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flow_taskmanager_registered", Help: "1 while the TaskManager is registered with a JobManager.",
		}),
		deployed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flow_taskmanager_tasks_deployed_total", Help: "Subtasks deployed to this TaskManager.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flow_taskmanager_tasks_failed_total", Help: "Subtasks that failed on this TaskManager.",
		}),
	}
	tm.tasksGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flow_taskmanager_tasks_running", Help: "Subtasks running on this TaskManager.",
	}, func() float64 {
		tm.mu.Lock()
		defer tm.mu.Unlock()
		return float64(len(tm.tasks))
	})
	tm.cacheMetrics = runtime.NewStateCacheMetrics(tm.stateCache)
	if opts.Metrics != nil {
		for _, c := range []prometheus.Collector{tm.registered, tm.deployed, tm.failed, tm.tasksGauge, tm.cacheMetrics} {
			if err := opts.Metrics.Register(c); err != nil {
				tm.closeConns()
				return nil, fmt.Errorf("register taskmanager metrics: %w", err)
			}
		}
	}
	return tm, nil
}

// ID is the TaskManager's id.
func (tm *TaskManager) ID() string { return tm.opts.ID }

// Register adds the TaskManager's services (task execution and data
// exchange) to s.
func (tm *TaskManager) Register(s *grpc.Server) {
	clusterv1.RegisterTaskExecutorServiceServer(s, tm)
	tm.exchange.RegisterService(s)
}

// SetAddress sets the RPC address other processes reach this TaskManager at.
func (tm *TaskManager) SetAddress(addr string) {
	tm.mu.Lock()
	tm.address = addr
	tm.mu.Unlock()
	tm.exchange.SetSelfAddress(addr)
}

// are not stopped or locked).
func (tm *TaskManager) samplesLocked() []*clusterv1.TaskSample {
	out := make([]*clusterv1.TaskSample, 0, len(tm.tasks))
	for _, t := range tm.tasks {
		v := t.sample.Load()
		s := &clusterv1.TaskSample{Task: t.id, BusyNs: v.BusyNs, IdleNs: v.IdleNs, BackpressuredNs: v.BackpressuredNs,
			RecordsIn: v.RecordsIn, RecordsOut: v.RecordsOut, EndOfStream: v.EndOfStream}
		if v.HasWatermark {
			s.WatermarkMs = &v.WatermarkMs
		}
		out = append(out, s)
	}
	return out
}

func (tm *TaskManager) runningLocked() []*clusterv1.TaskID {
	out := make([]*clusterv1.TaskID, 0, len(tm.tasks))
	for _, t := range tm.tasks {
		out = append(out, t.id)
	}
	return out
}

// DeployTask starts a subtask.
func (tm *TaskManager) DeployTask(ctx context.Context, req *clusterv1.DeployTaskRequest) (*clusterv1.DeployTaskResponse, error) {
	d := req.GetDeployment()
	id := d.GetId()
	if id == nil || d.GetGraph() == nil || len(d.GetOperators()) == 0 {
		return nil, rpcerr.New(rpcerr.ErrInvalidArgument, "deploy: the deployment lacks its id, graph or operators")
	}
	if err := tm.fenced(ctx); err != nil {
		return nil, err
	}
	k := keyOf(id)
	dir := filepath.Join(tm.opts.DataDir, "tasks", fmt.Sprintf("%s-%d", id.GetJobId(), id.GetAttempt()), fmt.Sprintf("%s-%d", id.GetTask(), id.GetSubtask()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, rpcerr.Errorf(rpcerr.ErrInternal, "deploy: create task dir: %v", err)
	}
	tm.mu.Lock()
	if tm.stopping {
		tm.mu.Unlock()
		return nil, rpcerr.New(rpcerr.ErrUnavailable, "deploy: the TaskManager is shutting down")
	}
	if newer, stale := tm.staleAttemptLocked(id); stale {
		tm.mu.Unlock()
		return nil, rpcerr.Errorf(rpcerr.ErrFailedPrecondition, "deploy: attempt %d of job %s is stale: attempt %d runs here", id.GetAttempt(), id.GetJobId(), newer)
	}
	if _, dup := tm.tasks[k]; dup {
		tm.mu.Unlock()
		return nil, rpcerr.Errorf(rpcerr.ErrAlreadyExists, "deploy: task %s/%d of job %s attempt %d is already running", id.GetTask(), id.GetSubtask(), id.GetJobId(), id.GetAttempt())
	}
	tctx, cancel := context.WithCancel(tm.base)
	t := &task{id: id, cancel: cancel, done: make(chan struct{}), control: make(chan any, controlBuffer), notes: runtime.NewNotifications(), sample: runtime.NewTaskSample()}
	tm.tasks[k] = t
	tm.wg.Add(1)
	tm.mu.Unlock()
	tm.deployed.Inc()

	env := runtime.TaskEnv{
		Registry: tm.opts.Registry, Exchange: tm.exchange, DataDir: dir,
		Logger:  tm.log.With("job", id.GetJobId(), "attempt", id.GetAttempt(), "task", id.GetTask(), "subtask", id.GetSubtask()),
		Metrics: tm.opts.Metrics, StateCache: tm.stateCache,
		Control: t.control, Notifications: t.notes, Checkpoints: &responder{tm: tm, id: id},
		Sample: t.sample,
	}
	go tm.runTask(tctx, t, d, env, dir)
	return &clusterv1.DeployTaskResponse{}, nil
}

func (tm *TaskManager) runTask(ctx context.Context, t *task, d *clusterv1.TaskDeployment, env runtime.TaskEnv, dir string) {
	defer tm.wg.Done()
	defer close(t.done)
	tm.report(&clusterv1.UpdateTaskStateRequest{Task: t.id, State: clusterv1.TaskState_TASK_STATE_RUNNING})
	err := tm.runSafely(ctx, d, env)
	t.notes.End()
	st, msg := clusterv1.TaskState_TASK_STATE_FINISHED, ""
	unreadable, _ := runtime.UnreadableCheckpoint(err)
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		st = clusterv1.TaskState_TASK_STATE_CANCELED
	default:
		st, msg = clusterv1.TaskState_TASK_STATE_FAILED, err.Error()
		tm.failed.Inc()
		env.Logger.Warn("task failed", "err", err)
	}
	tm.mu.Lock()
	delete(tm.tasks, keyOf(t.id))
	tm.mu.Unlock()
	t.cancel()
	if err := os.RemoveAll(dir); err != nil {
		env.Logger.Warn("remove task dir", "dir", dir, "err", err)
	}
	tm.report(&clusterv1.UpdateTaskStateRequest{Task: t.id, State: st, Failure: msg, UnreadableCheckpointId: unreadable})
}

// runSafely turns a panic escaping the runtime into a task failure, so one
// bad task cannot take the TaskManager down.
func (tm *TaskManager) runSafely(ctx context.Context, d *clusterv1.TaskDeployment, env runtime.TaskEnv) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("task panicked: %v", r)
		}
	}()
	return tm.opts.Run(ctx, d, env)
}

// report tells the JobManager about a task's state. A final state is
// retried while the TaskManager runs (a lost one would leave the job
// hanging); once the TaskManager is stopping, a few tries are made.
func (tm *TaskManager) report(req *clusterv1.UpdateTaskStateRequest) {
	req.TaskManagerId = tm.opts.ID
	id, st := req.GetTask(), req.GetState()
	delay := 50 * time.Millisecond
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(tm.base, 5*time.Second)
		_, err := tm.endpoint().rm.UpdateTaskState(ctx, req)
		cancel()
		if err == nil || st == clusterv1.TaskState_TASK_STATE_RUNNING {
			return // RUNNING is best effort; the final state is what matters
		}
		tm.mu.Lock()
		stopping := tm.stopping
		tm.mu.Unlock()
		if tm.base.Err() != nil || (stopping && try >= 3) {
			tm.log.Warn("could not report task state", "task", id.GetTask(), "subtask", id.GetSubtask(), "state", st, "err", status.Convert(err).Message())
			return
		}
		select {
		case <-time.After(delay):
		case <-tm.base.Done():
		}
		delay = min(delay*2, time.Second)
	}
}

// CancelTask cancels a running subtask. NotFound means it is not running
// here (finished already, or never arrived).
func (tm *TaskManager) CancelTask(ctx context.Context, req *clusterv1.CancelTaskRequest) (*clusterv1.CancelTaskResponse, error) {
	if err := tm.fenced(ctx); err != nil {
		return nil, err
	}
	if !tm.cancelTask(req.GetTask()) {
		return nil, rpcerr.Errorf(rpcerr.ErrNotFound, "task %s/%d of job %s is not running on %s", req.GetTask().GetTask(), req.GetTask().GetSubtask(), req.GetTask().GetJobId(), tm.opts.ID)
	}
	return &clusterv1.CancelTaskResponse{}, nil
}

func (tm *TaskManager) cancelTask(id *clusterv1.TaskID) bool {
	tm.mu.Lock()
	t := tm.tasks[keyOf(id)]
	tm.mu.Unlock()
	if t == nil {
		return false
	}
	tm.log.Info("canceling task", "job", id.GetJobId(), "task", id.GetTask(), "subtask", id.GetSubtask())
	t.cancel()
	return true
}

// shutdown cancels all tasks, waits for them (bounded), deregisters and
// closes connections.
func (tm *TaskManager) shutdown() {
	tm.mu.Lock()
	tm.stopping = true
	tm.link.registered, tm.link.lastErr = false, "shutting down"
	for _, t := range tm.tasks {
		t.cancel()
	}
	n := len(tm.tasks)
	tm.mu.Unlock()
	if n > 0 {
		tm.log.Info("canceling tasks before shutdown", "tasks", n)
	}
	done := make(chan struct{})
	go func() { tm.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(tm.opts.ShutdownTimeout):
		tm.log.Warn("tasks did not stop within the shutdown timeout", "timeout", tm.opts.ShutdownTimeout)
	}
	tm.cancelBase()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if _, err := tm.endpoint().rm.DeregisterTaskManager(ctx, &clusterv1.DeregisterTaskManagerRequest{TaskManagerId: tm.opts.ID}); err != nil {
		tm.log.Warn("deregister", "err", status.Convert(err).Message())
	}
	cancel()
	tm.closeConns()
}

func (tm *TaskManager) closeConns() {
	tm.cancelBase()
	if tm.stateCache != nil {
		tm.cacheMetrics.Release()
		tm.stateCache.Unref()
		tm.stateCache = nil
	}
	tm.exchange.Close()
	for _, ep := range tm.endpoints {
		ep.close()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
