package jobmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/internal/fencing"
	"github.com/flowrt/flow/internal/jobmanager/restart"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/jobspec"
	"github.com/flowrt/flow/pkg/keygroup"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Options configure a JobManager. Zero values take the documented defaults.
type Options struct {
	// DataDir holds the job store (required).
	DataDir string
	// HeartbeatTimeout: a TaskManager without a heartbeat for this long is
	// marked lost and its tasks fail. Default 10s.
	HeartbeatTimeout time.Duration
	// HeartbeatInterval TaskManagers are asked to use. Default
	// HeartbeatTimeout/5.
	HeartbeatInterval time.Duration
	// SlotTimeout: a job that cannot get enough slots for this long fails.
	// Default 60s.
	SlotTimeout time.Duration
	// RPCTimeout bounds each call to a TaskManager. Default 10s.
	RPCTimeout time.Duration
	// CheckpointStorage is the storage URL for jobs whose checkpoints section
	// names none. Default file://<DataDir>/checkpoints.
	CheckpointStorage string
	// SavepointDir is where savepoints go when the request names no
	// directory. Default file://<DataDir>/savepoints.
	SavepointDir string
	// Registry, when set, is used to reject jobs naming unknown operator types
	// at submission.
	Registry *api.Registry
	Logger   *slog.Logger
	// Metrics receives the JobManager's metrics; nil disables them.
	Metrics prometheus.Registerer
	// DialOptions for connections to TaskManagers; default insecure.
	DialOptions []grpc.DialOption
	// JobStore keeps the job records. Default: files under DataDir/jobs.
	JobStore JobStore
}

func (o *Options) ensureDefaults() {
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = 10 * time.Second
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = o.HeartbeatTimeout / 5
	}
	if o.SlotTimeout <= 0 {
		o.SlotTimeout = 60 * time.Second
	}
	if o.RPCTimeout <= 0 {
		o.RPCTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CheckpointStorage == "" && o.DataDir != "" {
		if abs, err := filepath.Abs(filepath.Join(o.DataDir, "checkpoints")); err == nil {
			o.CheckpointStorage = "file://" + abs
		}
	}
	if o.SavepointDir == "" && o.DataDir != "" {
		if abs, err := filepath.Abs(filepath.Join(o.DataDir, "savepoints")); err == nil {
			o.SavepointDir = "file://" + abs
		}
	}
	if o.DialOptions == nil {
		o.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
}

// JobManager coordinates a cluster: it accepts TaskManagers, tracks their
// heartbeats, stores and schedules jobs, and follows each job's tasks to a
// terminal status. It serves JobManagerService (flowctl) and
// ResourceManagerService (TaskManagers).
type JobManager struct {
	clusterv1.UnimplementedJobManagerServiceServer
	clusterv1.UnimplementedResourceManagerServiceServer

	id      string
	opts    Options
	log     *slog.Logger
	store   JobStore
	persist *persister

	// reg tracks the TaskManagers under its own lock (heartbeat.go).
	reg *registry

	mu    sync.Mutex
	jobs  map[string]*job
	order []string // job ids in submission order

	kick   chan struct{}
	done   chan struct{}
	closed bool
	wg     sync.WaitGroup
	// base is canceled by Close: background calls (notification
	// redelivery, restore verification) end with it.
	base     context.Context
	stopBase context.CancelFunc

	lostTotal      prometheus.Counter
	submittedTotal prometheus.Counter
}

type job struct {
	d     *clusterv1.JobDetails
	plan  *jobgraph.Plan
	slots []string // TaskManager id per slot, while the job holds slots
	// changed is closed and replaced on every change, waking watchers.
	changed chan struct{}
	// note is a transient status message (e.g. waiting for slots).
	note string
	// restart decides what a failure leads to; restartAt is when a
	// RESTARTING job is scheduled again; waitingSince is when the job
	// started waiting for slots (submission or restart).
	restart      restart.Strategy
	restartAt    time.Time
	waitingSince time.Time
	// ck drives the job's checkpoints.
	ck *jobCheckpoints
	// stoppedWith is the savepoint a stop-with-savepoint took; the job ends
	// FINISHED once its tasks are down.
	stoppedWith string
	// redeploy is the attempt whose deployment hit an unreachable
	// TaskManager: it is scheduled again at once on the others, without
	// using a restart attempt.
	redeploy int32
}

// New opens the job store under opts.DataDir and returns a JobManager.
// Jobs that were still running when a previous JobManager stopped are marked
// FAILED: their tasks are gone with it.
func New(opts Options) (*JobManager, error) {
	opts.ensureDefaults()
	if opts.DataDir == "" {
		return nil, errors.New("jobmanager: data dir is required: set --data-dir")
	}
	st := opts.JobStore
	if st == nil {
		fs, err := openStore(opts.DataDir)
		if err != nil {
			return nil, err
		}
		st = fs
	}
	jm := &JobManager{
		id:    "jm-" + randomID(4),
		opts:  opts,
		log:   opts.Logger,
		store: st,
		jobs:  map[string]*job{},
		kick:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		lostTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flow_jobmanager_taskmanagers_lost_total",
			Help: "TaskManagers marked lost after missing heartbeats.",
		}),
		submittedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flow_jobmanager_jobs_submitted_total",
			Help: "Jobs submitted to this JobManager.",
		}),
	}
	jm.base, jm.stopBase = context.WithCancel(context.Background())
	jm.persist = newPersister(jm, st)
	jm.reg = newRegistry(opts.HeartbeatInterval, opts.HeartbeatTimeout, opts.DialOptions)
	jm.reg.onLost = jm.taskManagerGone
	stored, errs := st.LoadAll()
	for _, err := range errs {
		jm.log.Warn("job store", "err", err)
	}
	sort.Slice(stored, func(i, j int) bool {
		return stored[i].GetSummary().GetSubmitTimeMs() < stored[j].GetSummary().GetSubmitTimeMs()
	})
	for _, d := range stored {
		// A job still waiting for slots waits SlotTimeout from now: the
		// TaskManagers need a heartbeat or two to register again.
		j := &job{d: d, changed: make(chan struct{}), waitingSince: time.Now()}
		j.restart = jm.restartStrategyOf(d.GetGraph())
		j.ck = newJobCheckpoints(jobspec.Checkpoints{})
		if p, err := jobgraph.BuildPlan(d.GetGraph()); err == nil {
			j.plan = p
		}
		id := d.GetSummary().GetJobId()
		jm.jobs[id] = j
		jm.order = append(jm.order, id)
		jm.wg.Add(1)
		go jm.recoverCheckpointHistory(id, d.GetGraph())
		switch st := d.GetSummary().GetStatus(); {
		case isTerminal(st):
		case st == clusterv1.JobStatus_JOB_STATUS_CREATED && j.plan != nil:
			// Still waiting for slots: keep waiting.
		default:
			msg := "the JobManager restarted while the job was " + shortStatus(st) + "; submit it again"
			d.Summary.Failure = msg
			jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_FAILED, msg)
			for _, t := range d.GetTasks() {
				for _, s := range t.GetSubtasks() {
					if !isTerminalTask(s.GetState()) {
						s.State = clusterv1.TaskState_TASK_STATE_FAILED
						s.Failure = "JobManager restarted"
					}
				}
			}
			jm.persistLocked(j)
		}
	}
	if opts.Metrics != nil {
		for _, c := range []prometheus.Collector{jm.lostTotal, jm.submittedTotal, &stateCollector{jm: jm}} {
			if err := opts.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("register jobmanager metrics: %w", err)
			}
		}
	}
	go jm.persist.run()
	return jm, nil
}

// ID identifies this JobManager process.
func (jm *JobManager) ID() string { return jm.id }

// Register adds the JobManager's services to s.
func (jm *JobManager) Register(s *grpc.Server) {
	clusterv1.RegisterJobManagerServiceServer(s, jm)
	clusterv1.RegisterResourceManagerServiceServer(s, jm)
}

// Run schedules waiting jobs until ctx ends or Close is called.
func (jm *JobManager) Run(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	ckTick := time.NewTicker(20 * time.Millisecond)
	defer ckTick.Stop()
	for {
		jm.schedulePending(time.Now())
		jm.reconcile()
		select {
		case <-ctx.Done():
			return
		case <-jm.done:
			return
		case <-jm.kick:
		case <-tick.C:
		case now := <-ckTick.C:
			jm.tickCheckpoints(now)
		}
	}
}

// Close stops timers, waits for in-flight deployments and closes
// connections to TaskManagers.
func (jm *JobManager) Close() error {
	jm.mu.Lock()
	if jm.closed {
		jm.mu.Unlock()
		return nil
	}
	jm.closed = true
	close(jm.done)
	jm.stopBase()
	jm.mu.Unlock()
	jm.wg.Wait()
	jm.persist.close() // writes what is still dirty
	jm.reg.close()
	jm.mu.Lock()
	defer jm.mu.Unlock()
	for _, j := range jm.jobs {
		j.ck.close()
	}
	return nil
}

func (jm *JobManager) wake() {
	select {
	case jm.kick <- struct{}{}:
	default:
	}
}

// ------------------------------------------------------------ flowctl API

func (jm *JobManager) SubmitJob(ctx context.Context, req *clusterv1.SubmitJobRequest) (*clusterv1.SubmitJobResponse, error) {
	g := req.GetGraph()
	if g == nil {
		return nil, status.Error(codes.InvalidArgument, "submit: the request carries no job graph")
	}
	plan, err := jm.validate(g)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ckCfg, err := jobspec.CheckpointsOf(g)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	id := randomID(16)
	ck, err := jm.openCheckpoints(ctx, id, ckCfg)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if p := req.GetRestorePath(); p != "" {
		r, err := openRestore(ctx, p, g, req.GetAllowNonRestoredState())
		if err != nil {
			ck.close()
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		ck.restore, ck.initial = r, r
	}
	now := time.Now()
	d := &clusterv1.JobDetails{
		Summary: &clusterv1.JobSummary{
			JobId: id, Name: g.GetName(), Status: clusterv1.JobStatus_JOB_STATUS_CREATED,
			SubmitTimeMs: now.UnixMilli(), Attempt: 1,
		},
		Graph: g,
	}
	for _, t := range plan.Tasks {
		ti := &clusterv1.TaskVertexInfo{Id: t.ID, Operators: t.Operators, Parallelism: int32(t.Parallelism)}
		for i := 0; i < t.Parallelism; i++ {
			ti.Subtasks = append(ti.Subtasks, &clusterv1.SubtaskInfo{Index: int32(i)})
		}
		d.Tasks = append(d.Tasks, ti)
	}
	d.History = []*clusterv1.StatusChange{{Status: clusterv1.JobStatus_JOB_STATUS_CREATED, TimeMs: now.UnixMilli(), Message: "submitted"}}
	j := &job{d: d, plan: plan, changed: make(chan struct{}), waitingSince: now, restart: jm.restartStrategyOf(g), ck: ck}
	// Stored before it is visible: a JobManager that restarts knows every
	// job it ever acknowledged. Written without jm.mu (d is not shared yet).
	if err := jm.store.Save(d); err != nil {
		ck.close()
		return nil, status.Errorf(codes.Internal, "store job: %v", err)
	}
	jm.mu.Lock()
	jm.jobs[id] = j
	jm.order = append(jm.order, id)
	jm.mu.Unlock()
	jm.submittedTotal.Inc()
	jm.log.Info("job submitted", "job", id, "name", g.GetName(), "slots", maxParallelism(plan))
	jm.wake()
	return &clusterv1.SubmitJobResponse{JobId: id}, nil
}

// validate checks what the JobManager can check of a graph: its shape, its
// parallelism against max parallelism, and (with a registry) operator types.
func (jm *JobManager) validate(g *jobgraphv1.JobGraph) (*jobgraph.Plan, error) {
	plan, err := jobgraph.BuildPlan(g)
	if err != nil {
		return nil, err
	}
	maxP := int(g.GetMaxParallelism())
	if maxP == 0 {
		maxP = keygroup.DefaultMaxParallelism
	}
	var errs []error
	for _, v := range g.GetVertices() {
		if err := keygroup.Validate(jobgraph.VertexParallelism(g, v), maxP); err != nil {
			errs = append(errs, fmt.Errorf("operator %q: %w", v.GetId(), err))
		}
		if jm.opts.Registry != nil {
			// A source and a sink may share a name (file): take the kind the vertex has.
			kind := api.KindOperator
			switch v.GetKind() {
			case jobgraphv1.VertexKind_VERTEX_KIND_SOURCE:
				kind = api.KindSource
			case jobgraphv1.VertexKind_VERTEX_KIND_SINK:
				kind = api.KindSink
			}
			typ, err := jm.opts.Registry.LookupKind(v.GetType(), kind)
			if err == nil {
				// Build it as a TaskManager will: a config accepted here
				// deploys (graphs from the Go SDK skip jobspec's check).
				_, err = typ.Instantiate(v.GetConfig())
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("operator %q: %w", v.GetId(), err))
			}
		}
	}
	return plan, errors.Join(errs...)
}

func (jm *JobManager) ListJobs(ctx context.Context, _ *clusterv1.ListJobsRequest) (*clusterv1.ListJobsResponse, error) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	resp := &clusterv1.ListJobsResponse{}
	for _, id := range jm.order {
		resp.Jobs = append(resp.Jobs, proto.Clone(jm.jobs[id].d.GetSummary()).(*clusterv1.JobSummary))
	}
	return resp, nil
}

func (jm *JobManager) lookup(id string) (*job, error) {
	j, ok := jm.jobs[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "job %q not found", id)
	}
	return j, nil
}

func (jm *JobManager) GetJob(ctx context.Context, req *clusterv1.GetJobRequest) (*clusterv1.GetJobResponse, error) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	j, err := jm.lookup(req.GetJobId())
	if err != nil {
		return nil, err
	}
	d := proto.Clone(j.d).(*clusterv1.JobDetails)
	// Fill in addresses of the TaskManagers that run subtasks.
	for _, t := range d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			s.TaskManagerAddress = jm.reg.address(s.GetTaskManagerId())
		}
	}
	return &clusterv1.GetJobResponse{Job: d}, nil
}

func (jm *JobManager) CancelJob(ctx context.Context, req *clusterv1.CancelJobRequest) (*clusterv1.CancelJobResponse, error) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	j, err := jm.lookup(req.GetJobId())
	if err != nil {
		return nil, err
	}
	switch st := j.d.GetSummary().GetStatus(); {
	case isTerminal(st):
		return nil, status.Errorf(codes.FailedPrecondition, "job %q is already %s", req.GetJobId(), shortStatus(st))
	case st == clusterv1.JobStatus_JOB_STATUS_CREATED:
		jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_CANCELED, "canceled before it was scheduled")
		jm.persistLocked(j)
	case st == clusterv1.JobStatus_JOB_STATUS_CANCELING:
	default:
		jm.stopCoordinatorLocked(j, "job canceled")
		jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_CANCELING, "cancel requested")
		jm.cancelSubtasksLocked(j, "job canceled")
		jm.maybeCompleteLocked(j)
		jm.persistLocked(j)
	}
	return &clusterv1.CancelJobResponse{}, nil
}

func (jm *JobManager) WatchJob(req *clusterv1.WatchJobRequest, stream clusterv1.JobManagerService_WatchJobServer) error {
	var last *clusterv1.JobStatusEvent
	for {
		jm.mu.Lock()
		j, err := jm.lookup(req.GetJobId())
		if err != nil {
			jm.mu.Unlock()
			return err
		}
		ev := &clusterv1.JobStatusEvent{Summary: proto.Clone(j.d.GetSummary()).(*clusterv1.JobSummary), Message: j.note}
		changed := j.changed
		jm.mu.Unlock()
		if last == nil || last.GetSummary().GetStatus() != ev.GetSummary().GetStatus() ||
			last.GetMessage() != ev.GetMessage() || last.GetSummary().GetAttempt() != ev.GetSummary().GetAttempt() {
			if err := stream.Send(ev); err != nil {
				return err
			}
			last = ev
		}
		if isTerminal(ev.GetSummary().GetStatus()) {
			return nil
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-jm.done:
			return status.Error(codes.Unavailable, "the JobManager is shutting down")
		}
	}
}

func (jm *JobManager) ListTaskManagers(ctx context.Context, _ *clusterv1.ListTaskManagersRequest) (*clusterv1.ListTaskManagersResponse, error) {
	return &clusterv1.ListTaskManagersResponse{TaskManagers: jm.reg.list()}, nil
}

// ------------------------------------------------------ TaskManager API

func (jm *JobManager) RegisterTaskManager(ctx context.Context, req *clusterv1.RegisterTaskManagerRequest) (*clusterv1.RegisterTaskManagerResponse, error) {
	if req.GetTaskManagerId() == "" || req.GetAddress() == "" || req.GetSlots() < 0 {
		return nil, status.Error(codes.InvalidArgument, "register: task_manager_id, address and a non-negative slot count are required")
	}
	conn, err := grpc.NewClient(req.GetAddress(), append(slices.Clip(jm.opts.DialOptions), grpc.WithChainUnaryInterceptor(fencing.Interceptor(jm.id)))...)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "register: bad TaskManager address %q: %v", req.GetAddress(), err)
	}
	interval, ttl, ok := jm.reg.register(req, conn, time.Now())
	if !ok {
		conn.Close()
		return nil, status.Error(codes.Unavailable, "the JobManager is shutting down")
	}
	jm.log.Info("taskmanager registered", "id", req.GetTaskManagerId(), "address", req.GetAddress(), "slots", req.GetSlots(), "heartbeat_interval", interval)
	jm.wake()
	return &clusterv1.RegisterTaskManagerResponse{
		JobManagerId:        jm.id,
		HeartbeatIntervalMs: interval.Milliseconds(),
		HeartbeatTimeoutMs:  ttl.Milliseconds(),
	}, nil
}

// Heartbeat resets the TaskManager's TTL. It takes only the registry's
// lock: the tasks it asks to cancel were found unwanted (by reconcile) in
// the TaskManager's previous report.
func (jm *JobManager) Heartbeat(ctx context.Context, req *clusterv1.HeartbeatRequest) (*clusterv1.HeartbeatResponse, error) {
	cancel, rereg := jm.reg.heartbeat(req.GetTaskManagerId(), req.GetRunningTasks(), time.Now())
	if rereg {
		return &clusterv1.HeartbeatResponse{Reregister: true}, nil
	}
	return &clusterv1.HeartbeatResponse{CancelTasks: cancel}, nil
}

// reconcile compares what the TaskManagers reported running with what the
// jobs want, for their next heartbeat answers.
func (jm *JobManager) reconcile() {
	reports := jm.reg.reports()
	if len(reports) == 0 {
		return
	}
	unwanted := map[string][]*clusterv1.TaskID{}
	jm.mu.Lock()
	for tmID, running := range reports {
		for _, t := range running {
			if !jm.wantsLocked(t, tmID) {
				unwanted[tmID] = append(unwanted[tmID], t)
			}
		}
	}
	jm.mu.Unlock()
	for tmID, tasks := range unwanted {
		jm.reg.setUnwanted(tmID, tasks)
	}
}

// wantsLocked reports whether the task is one the JobManager expects to be
// running on that TaskManager.
func (jm *JobManager) wantsLocked(t *clusterv1.TaskID, tmID string) bool {
	j := jm.jobs[t.GetJobId()]
	if j == nil || j.d.GetSummary().GetAttempt() != t.GetAttempt() || isTerminal(j.d.GetSummary().GetStatus()) {
		return false
	}
	s := subtaskOf(j, t.GetTask(), t.GetSubtask())
	return s != nil && s.GetTaskManagerId() == tmID && !isTerminalTask(s.GetState())
}

// markUnreachable takes a TaskManager that failed an RPC with Unavailable
// out of service, as a missed heartbeat would.
func (jm *JobManager) markUnreachable(id, reason string) {
	addr := jm.reg.address(id)
	msg := fmt.Sprintf("TaskManager %s (%s) unreachable: %s", id, addr, reason)
	if jm.reg.retire(id, clusterv1.TaskManagerState_TASK_MANAGER_STATE_LOST, msg) {
		jm.log.Warn("taskmanager unreachable; marked lost", "id", id, "address", addr, "reason", reason)
	}
}

func (jm *JobManager) DeregisterTaskManager(ctx context.Context, req *clusterv1.DeregisterTaskManagerRequest) (*clusterv1.DeregisterTaskManagerResponse, error) {
	id := req.GetTaskManagerId()
	if jm.reg.retire(id, clusterv1.TaskManagerState_TASK_MANAGER_STATE_DEREGISTERED, fmt.Sprintf("TaskManager %s shut down", id)) {
		jm.log.Info("taskmanager deregistered", "id", id)
	}
	return &clusterv1.DeregisterTaskManagerResponse{}, nil
}

// taskManagerGone fails every subtask a TaskManager that left service
// still ran (the registry calls it, without its lock).
func (jm *JobManager) taskManagerGone(id, reason string) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.closed {
		return
	}
	if strings.Contains(reason, " lost: ") || strings.Contains(reason, " unreachable: ") {
		jm.lostTotal.Inc()
		jm.log.Warn("taskmanager lost", "id", id, "reason", reason)
	}
	for _, jid := range jm.order {
		j := jm.jobs[jid]
		if isTerminal(j.d.GetSummary().GetStatus()) {
			continue
		}
		hit := false
		for _, t := range j.d.GetTasks() {
			for _, s := range t.GetSubtasks() {
				if s.GetTaskManagerId() == id && !isTerminalTask(s.GetState()) {
					s.State = clusterv1.TaskState_TASK_STATE_FAILED
					s.Failure = reason
					hit = true
				}
			}
		}
		if hit {
			jm.taskFailedLocked(j, reason)
			jm.maybeCompleteLocked(j)
			jm.persistLocked(j)
		}
	}
	jm.wake()
}

func (jm *JobManager) UpdateTaskState(ctx context.Context, req *clusterv1.UpdateTaskStateRequest) (*clusterv1.UpdateTaskStateResponse, error) {
	t := req.GetTask()
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.closed {
		return nil, status.Error(codes.Unavailable, "the JobManager is shutting down")
	}
	j := jm.jobs[t.GetJobId()]
	if j == nil || j.d.GetSummary().GetAttempt() != t.GetAttempt() {
		return &clusterv1.UpdateTaskStateResponse{}, nil // stale: an old attempt
	}
	s := subtaskOf(j, t.GetTask(), t.GetSubtask())
	if s == nil || s.GetTaskManagerId() != req.GetTaskManagerId() || isTerminalTask(s.GetState()) {
		return &clusterv1.UpdateTaskStateResponse{}, nil
	}
	s.State = req.GetState()
	s.Failure = req.GetFailure()
	switch req.GetState() {
	case clusterv1.TaskState_TASK_STATE_FAILED:
		jm.log.Warn("task failed", "job", t.GetJobId(), "task", t.GetTask(), "subtask", t.GetSubtask(), "failure", req.GetFailure())
		if id := req.GetUnreadableCheckpointId(); id != 0 {
			jm.restoreUnreadableLocked(j, id, req.GetFailure())
		}
		jm.taskFailedLocked(j, fmt.Sprintf("task %s (subtask %d of %d) failed: %s", t.GetTask(), t.GetSubtask(), len(subtasksOf(j, t.GetTask())), req.GetFailure()))
	case clusterv1.TaskState_TASK_STATE_CANCELED:
		if j.d.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_CANCELING {
			// Nobody asked for this: the TaskManager is going away.
			jm.taskFailedLocked(j, fmt.Sprintf("task %s (subtask %d of %d) was canceled by TaskManager %s (shutting down)",
				t.GetTask(), t.GetSubtask(), len(subtasksOf(j, t.GetTask())), req.GetTaskManagerId()))
		}
	case clusterv1.TaskState_TASK_STATE_RUNNING:
		jm.maybeRunningLocked(j)
	case clusterv1.TaskState_TASK_STATE_FINISHED:
		if c := j.ck; c != nil && c.coord != nil {
			tid := checkpoint.TaskID{Vertex: t.GetTask(), Subtask: int(t.GetSubtask())}
			if c.sources[tid] {
				c.sourceEnded = true
			}
			jm.stepLocked(j, checkpoint.Event{Type: checkpoint.EventTaskFinished, Time: time.Now(), Task: tid})
		}
	}
	jm.maybeCompleteLocked(j)
	jm.persistLocked(j)
	return &clusterv1.UpdateTaskStateResponse{}, nil
}

// ------------------------------------------------------- job lifecycle

// stopWithSavepointLocked stops a job after its savepoint completed.
func (jm *JobManager) stopWithSavepointLocked(j *job, path string) {
	if isTerminal(j.d.GetSummary().GetStatus()) {
		return
	}
	j.stoppedWith = path
	jm.stopCoordinatorLocked(j, "job stopped with a savepoint")
	jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_CANCELING, "stopping after savepoint "+path)
	jm.cancelSubtasksLocked(j, "job stopped with a savepoint")
	jm.maybeCompleteLocked(j)
	jm.persistLocked(j)
}

// taskFailedLocked moves a running job to FAILING and cancels its other
// subtasks. (Restart strategies arrive with checkpointing.)
func (jm *JobManager) taskFailedLocked(j *job, reason string) {
	st := j.d.GetSummary().GetStatus()
	if isTerminal(st) || st == clusterv1.JobStatus_JOB_STATUS_FAILING {
		return
	}
	if st == clusterv1.JobStatus_JOB_STATUS_CANCELING {
		return // already going down; the failure is recorded on the subtask
	}
	j.d.Summary.Failure = reason
	jm.stopCoordinatorLocked(j, "job failing: "+reason)
	jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_FAILING, reason)
	jm.cancelSubtasksLocked(j, "another task failed")
}

// cancelSubtasksLocked asks TaskManagers to cancel every live subtask. A
// subtask whose TaskManager cannot be reached is marked canceled: its
// TaskManager is gone or will learn from its next heartbeat.
func (jm *JobManager) cancelSubtasksLocked(j *job, reason string) {
	attempt := j.d.GetSummary().GetAttempt()
	for _, t := range j.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			if isTerminalTask(s.GetState()) {
				continue
			}
			tm, ok := jm.reg.lookup(s.GetTaskManagerId())
			if !ok || s.GetState() == clusterv1.TaskState_TASK_STATE_UNSPECIFIED {
				s.State = clusterv1.TaskState_TASK_STATE_CANCELED
				continue
			}
			s.State = clusterv1.TaskState_TASK_STATE_CANCELING
			id := &clusterv1.TaskID{JobId: j.d.GetSummary().GetJobId(), Attempt: attempt, Task: t.GetId(), Subtask: s.GetIndex()}
			client, tmID := tm.client, tm.id
			jm.wg.Add(1)
			go func() {
				defer jm.wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), jm.opts.RPCTimeout)
				defer cancel()
				if _, err := client.CancelTask(ctx, &clusterv1.CancelTaskRequest{Task: id}); err != nil {
					jm.log.Warn("cancel task", "task", id.GetTask(), "subtask", id.GetSubtask(), "taskmanager", tmID, "err", err)
					jm.forceTaskState(id, tmID, clusterv1.TaskState_TASK_STATE_CANCELED, "cancel failed: "+err.Error())
				}
			}()
		}
	}
}

func (jm *JobManager) forceTaskState(id *clusterv1.TaskID, tmID string, st clusterv1.TaskState, msg string) {
	_, _ = jm.UpdateTaskState(context.Background(), &clusterv1.UpdateTaskStateRequest{TaskManagerId: tmID, Task: id, State: st, Failure: msg})
}

func (jm *JobManager) maybeRunningLocked(j *job) {
	switch j.d.GetSummary().GetStatus() {
	case clusterv1.JobStatus_JOB_STATUS_CREATED, clusterv1.JobStatus_JOB_STATUS_RESTARTING:
		jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_RUNNING, fmt.Sprintf("running (attempt %d)", j.d.GetSummary().GetAttempt()))
		jm.startCoordinatorLocked(j, time.Now())
	}
}

// maybeCompleteLocked moves the job to its terminal status once every
// subtask is terminal, and frees its slots.
func (jm *JobManager) maybeCompleteLocked(j *job) {
	st := j.d.GetSummary().GetStatus()
	if isTerminal(st) || st == clusterv1.JobStatus_JOB_STATUS_RESTARTING && j.slots == nil ||
		st == clusterv1.JobStatus_JOB_STATUS_CREATED && j.slots == nil {
		return
	}
	allFinished := true
	for _, t := range j.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			if !isTerminalTask(s.GetState()) {
				return
			}
			if s.GetState() != clusterv1.TaskState_TASK_STATE_FINISHED {
				allFinished = false
			}
		}
	}
	switch {
	case st == clusterv1.JobStatus_JOB_STATUS_CANCELING && j.stoppedWith != "":
		jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_FINISHED, "stopped with savepoint "+j.stoppedWith)
	case st == clusterv1.JobStatus_JOB_STATUS_CANCELING:
		jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_CANCELED, "all tasks canceled")
	case st == clusterv1.JobStatus_JOB_STATUS_FAILING || !allFinished:
		now := time.Now()
		var delay time.Duration
		var ok bool
		var reason string
		if j.redeploy == j.d.GetSummary().GetAttempt() {
			// The deployment hit an unreachable TaskManager: schedule the
			// job again on the others; no restart attempt is used.
			ok = true
		} else {
			delay, ok, reason = j.restart.OnFailure(now)
		}
		if ok {
			jm.releaseSlotsLocked(j)
			j.restartAt = now.Add(delay)
			jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_RESTARTING,
				fmt.Sprintf("restarting in %s as attempt %d after: %s", delay, j.d.GetSummary().GetAttempt()+1, j.d.GetSummary().GetFailure()))
			jm.wake()
			return
		}
		j.d.Summary.Failure = j.d.GetSummary().GetFailure() + " (not restarted: " + reason + ")"
		jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_FAILED, j.d.GetSummary().GetFailure())
	case j.stoppedWith != "":
		jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_FINISHED, "stopped with savepoint "+j.stoppedWith)
	default:
		jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_FINISHED, "all tasks finished")
	}
	jm.stopCoordinatorLocked(j, "job "+shortStatus(j.d.GetSummary().GetStatus()))
	jm.cleanupCheckpointsLocked(j)
	jm.releaseSlotsLocked(j)
	jm.wake()
}

func (jm *JobManager) releaseSlotsLocked(j *job) {
	jm.reg.release(j.slots)
	j.slots = nil
}

func (jm *JobManager) setStatusLocked(j *job, st clusterv1.JobStatus, msg string) {
	now := time.Now().UnixMilli()
	sum := j.d.GetSummary()
	if sum.GetStatus() == st {
		return
	}
	sum.Status = st
	if isTerminal(st) {
		sum.EndTimeMs = now
	}
	j.d.History = append(j.d.History, &clusterv1.StatusChange{Status: st, TimeMs: now, Message: msg})
	j.note = msg
	jm.log.Info("job status", "job", sum.GetJobId(), "status", shortStatus(st), "message", msg)
	jm.notifyLocked(j)
}

func (jm *JobManager) notifyLocked(j *job) {
	close(j.changed)
	j.changed = make(chan struct{})
}

// persistLocked schedules the job's record for writing (persist.go).
func (jm *JobManager) persistLocked(j *job) {
	jm.persist.markLocked(j.d.GetSummary().GetJobId())
}

// schedulePending gives waiting jobs slots, in submission order, and fails
// those that waited longer than SlotTimeout.
func (jm *JobManager) schedulePending(now time.Time) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.closed {
		return
	}
	for _, id := range jm.order {
		j := jm.jobs[id]
		if j.slots != nil || j.plan == nil {
			continue
		}
		switch j.d.GetSummary().GetStatus() {
		case clusterv1.JobStatus_JOB_STATUS_CREATED:
		case clusterv1.JobStatus_JOB_STATUS_RESTARTING:
			if now.Before(j.restartAt) {
				continue
			}
			if j.waitingSince.Before(j.restartAt) {
				if jm.needsRestoreChoiceLocked(j) {
					continue // reading the restore candidates; woken when done
				}
				if isTerminal(j.d.GetSummary().GetStatus()) {
					continue
				}
				jm.beginAttemptLocked(j)
			}
		default:
			continue
		}
		need := maxParallelism(j.plan)
		slots, err := allocateSlots(need, jm.reg.offers())
		if err != nil {
			waited := now.Sub(j.waitingSince)
			if waited >= jm.opts.SlotTimeout {
				msg := fmt.Sprintf("%v; waited %s: add TaskManagers or slots (--slots), or lower the job's parallelism", err, jm.opts.SlotTimeout)
				j.d.Summary.Failure = msg
				jm.setStatusLocked(j, clusterv1.JobStatus_JOB_STATUS_FAILED, msg)
				jm.persistLocked(j)
				continue
			}
			note := fmt.Sprintf("waiting for slots: %v", err)
			if j.note != note {
				j.note = note
				jm.notifyLocked(j)
			}
			continue
		}
		jm.assignLocked(j, slots)
	}
}

// beginAttemptLocked starts the next attempt of a restarting job: a new
// attempt number (so stale reports of the old one are ignored) and fresh
// subtask states.
func (jm *JobManager) beginAttemptLocked(j *job) {
	sum := j.d.GetSummary()
	sum.Attempt++
	sum.Failure = ""
	j.waitingSince = j.restartAt
	for _, t := range j.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			s.State, s.Failure, s.TaskManagerId = clusterv1.TaskState_TASK_STATE_UNSPECIFIED, "", ""
		}
	}
	jm.persistLocked(j)
}

// restartStrategyOf reads a graph's restart section (defaults: none).
func (jm *JobManager) restartStrategyOf(g *jobgraphv1.JobGraph) restart.Strategy {
	r, err := g.EffectiveRestartConfig()
	if err != nil {
		jm.log.Warn("bad restart section; not restarting", "job", g.GetName(), "err", err)
	}
	return restart.For(r, mathrand.Float64)
}

// assignLocked places subtask i of every task vertex in slot i and deploys.
func (jm *JobManager) assignLocked(j *job, slots []string) {
	j.slots = slots
	jm.reg.take(slots)
	for _, t := range j.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			s.TaskManagerId = slots[s.GetIndex()]
			s.State = clusterv1.TaskState_TASK_STATE_DEPLOYING
			s.Failure = ""
		}
	}
	j.note = fmt.Sprintf("deploying %d subtasks to %d slots", j.plan.TotalSubtasks(), len(slots))
	jm.notifyLocked(j)
	jm.persistLocked(j)

	addrOf := func(task string, subtask int) string {
		return jm.reg.address(slots[subtask])
	}
	sum := j.d.GetSummary()
	deps := jobgraph.BuildDeployments(sum.GetJobId(), sum.GetAttempt(), j.d.GetGraph(), j.plan, addrOf)
	if j.ck != nil {
		for _, dep := range deps {
			dep.Restore = restoreFor(j.ck.restore, dep)
		}
	}
	type call struct {
		client clusterv1.TaskExecutorServiceClient
		tmID   string
		dep    *clusterv1.TaskDeployment
	}
	calls := make([]call, 0, len(deps))
	for _, dep := range deps {
		tmID := slots[dep.GetId().GetSubtask()]
		tm, _ := jm.reg.lookup(tmID)
		calls = append(calls, call{client: tm.client, tmID: tmID, dep: dep})
	}
	for _, c := range calls {
		jm.wg.Add(1)
		go func() {
			defer jm.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), jm.opts.RPCTimeout)
			defer cancel()
			err := status.Error(codes.Unavailable, "the TaskManager left")
			if c.client != nil {
				_, err = c.client.DeployTask(ctx, &clusterv1.DeployTaskRequest{Deployment: c.dep})
			}
			if err != nil {
				id := c.dep.GetId()
				jm.log.Warn("deploy task", "task", id.GetTask(), "subtask", id.GetSubtask(), "taskmanager", c.tmID, "err", err)
				msg := fmt.Sprintf("deploy to TaskManager %s failed: %v", c.tmID, status.Convert(err).Message())
				if status.Code(err) == codes.Unavailable {
					// The TaskManager does not answer: suspect it now rather
					// than after the heartbeat timeout, and schedule this
					// attempt again on the others without using a restart
					// attempt. A live one re-registers on its next heartbeat.
					jm.deployUnreachable(c.tmID, id, msg)
				}
				jm.forceTaskState(id, c.tmID, clusterv1.TaskState_TASK_STATE_FAILED, msg)
			}
		}()
	}
}

// ------------------------------------------------------------- helpers

func subtaskOf(j *job, task string, index int32) *clusterv1.SubtaskInfo {
	subs := subtasksOf(j, task)
	if index < 0 || int(index) >= len(subs) {
		return nil
	}
	return subs[index]
}

func subtasksOf(j *job, task string) []*clusterv1.SubtaskInfo {
	for _, t := range j.d.GetTasks() {
		if t.GetId() == task {
			return t.GetSubtasks()
		}
	}
	return nil
}

func maxParallelism(p *jobgraph.Plan) int {
	n := 0
	for _, t := range p.Tasks {
		n = max(n, t.Parallelism)
	}
	return n
}

func isTerminal(s clusterv1.JobStatus) bool {
	switch s {
	case clusterv1.JobStatus_JOB_STATUS_FINISHED, clusterv1.JobStatus_JOB_STATUS_CANCELED, clusterv1.JobStatus_JOB_STATUS_FAILED:
		return true
	}
	return false
}

func isTerminalTask(s clusterv1.TaskState) bool {
	switch s {
	case clusterv1.TaskState_TASK_STATE_FINISHED, clusterv1.TaskState_TASK_STATE_CANCELED, clusterv1.TaskState_TASK_STATE_FAILED:
		return true
	}
	return false
}

// shortStatus renders JOB_STATUS_RUNNING as RUNNING.
func shortStatus(s clusterv1.JobStatus) string { return trimPrefix(s.String(), "JOB_STATUS_") }

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
