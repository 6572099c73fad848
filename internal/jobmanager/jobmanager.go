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
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/jobmanager/ha"
	"github.com/flowrt/flow/internal/jobmanager/heartbeat"
	"github.com/flowrt/flow/internal/jobmanager/jobmaster"
	"github.com/flowrt/flow/internal/jobmanager/jobstore"
	"github.com/flowrt/flow/internal/jobmanager/lifecycle"
	"github.com/flowrt/flow/internal/jobmanager/restart"
	"github.com/flowrt/flow/internal/jobmanager/scheduler"
	"github.com/flowrt/flow/internal/jobmanager/taskstats"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/jobspec"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Options configure a JobManager. Zero values take the documented defaults.
type Options struct {
	// ID identifies this JobManager (the fencing token's id). Default:
	// jm-<random>, new for every process.
	ID string
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
	// StatsWindow: per-vertex backpressure ratios and records/s are
	// computed over the heartbeat samples of this window. Default 10s.
	StatsWindow time.Duration
	// CheckpointIDs records the checkpoint ids issued per job (package
	// ha). Default: files under DataDir/ha/checkpoint-ids.
	CheckpointIDs ha.CheckpointIDCounter
	// CompletedCheckpoints opens each job's completed-checkpoint store
	// (package jobmaster). Default: jobmaster.OpenFileStore, the list of
	// completed checkpoints read from the checkpoint storage itself.
	CompletedCheckpoints jobmaster.StoreOpener
	// LeaderEpoch is this JobManager's leadership term (ha.Term.Epoch),
	// carried on every call to a TaskManager with its id (package
	// internal/fencing); 0 when it was not elected.
	LeaderEpoch uint64
	// RecoverJobs: jobs that were running when the previous leader
	// stopped resume as a new attempt from their latest completed
	// checkpoint (high availability), instead of being marked FAILED.
	RecoverJobs bool
}

func (o *Options) ensureDefaults() {
	if o.ID == "" {
		o.ID = NewID()
	}
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
	if o.CheckpointIDs == nil && o.DataDir != "" {
		o.CheckpointIDs = ha.NewFileCounter(filepath.Join(o.DataDir, "ha"))
	}
	if o.DialOptions == nil {
		o.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
}

// JobStore keeps the JobManager's job records (package jobstore).
type JobStore = jobstore.Store

// ErrNotEnoughSlots is returned (wrapped) when the cluster lacks free slots.
var ErrNotEnoughSlots = scheduler.ErrNotEnoughSlots

// JobManager coordinates a cluster: it accepts TaskManagers, tracks their
// heartbeats, stores and schedules jobs, and follows each job's tasks to a
// terminal status. It serves JobManagerService (flowctl) and
// ResourceManagerService (TaskManagers).
//
// Each job has its own job master (package jobmaster): the JobManager
// routes events to it and reads the view it publishes.
type JobManager struct {
	clusterv1.UnimplementedJobManagerServiceServer
	clusterv1.UnimplementedResourceManagerServiceServer

	id      string
	opts    Options
	log     *slog.Logger
	store   JobStore
	persist *jobstore.Writer
	exec    *executor

	// reg tracks the TaskManagers under its own lock.
	reg *heartbeat.Registry
	// stats holds the subtask samples of heartbeats, under its own lock.
	stats *taskstats.Stats

	// mu guards the set of job masters; no job logic and no I/O runs
	// under it.
	mu     sync.Mutex
	jobs   map[string]*jobmaster.Master
	order  []string // job ids in submission order
	closed bool

	kick chan struct{}
	done chan struct{}

	lostTotal      prometheus.Counter
	submittedTotal prometheus.Counter
}

// New opens the job store under opts.DataDir and returns a JobManager.
// Jobs that were still running when a previous JobManager stopped are marked
// FAILED (their tasks are gone with it), or, with opts.RecoverJobs (a
// leader taking over), restarted from their latest checkpoint.
func New(opts Options) (*JobManager, error) {
	opts.ensureDefaults()
	if opts.DataDir == "" {
		return nil, errors.New("jobmanager: data dir is required: set --data-dir")
	}
	st := opts.JobStore
	if st == nil {
		fs, err := jobstore.Open(opts.DataDir)
		if err != nil {
			return nil, err
		}
		st = fs
	}
	jm := &JobManager{
		id:    opts.ID,
		opts:  opts,
		log:   opts.Logger,
		store: st,
		jobs:  map[string]*jobmaster.Master{},
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
	jm.exec = &executor{jm: jm}
	jm.persist = jobstore.NewWriter(st, jm.log)
	jm.reg = heartbeat.New(opts.HeartbeatInterval, opts.HeartbeatTimeout, jm.taskManagerGone)
	jm.stats = taskstats.New(opts.StatsWindow)
	if opts.Metrics != nil {
		for _, c := range []prometheus.Collector{jm.lostTotal, jm.submittedTotal, &stateCollector{jm: jm}, &jobCollector{jm: jm}} {
			if err := opts.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("register jobmanager metrics: %w", err)
			}
		}
	}
	stored, errs := st.LoadAll()
	for _, err := range errs {
		jm.log.Warn("job store", "err", err)
	}
	sort.Slice(stored, func(i, j int) bool {
		return stored[i].GetSummary().GetSubmitTimeMs() < stored[j].GetSummary().GetSubmitTimeMs()
	})
	now := time.Now()
	for _, d := range stored {
		// A job still waiting for slots waits SlotTimeout from now: the
		// TaskManagers need a heartbeat or two to register again.
		plan, err := jobgraph.BuildPlan(d.GetGraph())
		if err != nil {
			plan = nil
		}
		ck, recover, why := jm.storedCheckpoints(d, plan)
		jm.addJob(jm.startMaster(d, plan, ck, true, recover, why, now))
	}
	go jm.persist.Run()
	return jm, nil
}

// storedCheckpoints opens the checkpointing of a stored job that will
// run again: one still waiting for its first slots, and, when this
// JobManager recovers jobs (high availability), one that was running
// (recover is then true). A job whose checkpoints cannot be opened is not
// recovered: it fails as without high availability, and why names the
// reason for its history.
func (jm *JobManager) storedCheckpoints(d *clusterv1.JobDetails, plan *jobgraph.Plan) (ck *jobmaster.Checkpoints, recover bool, why string) {
	st := d.GetSummary().GetStatus()
	if plan == nil || lifecycle.IsTerminal(st) || st != clusterv1.JobStatus_JOB_STATUS_CREATED && !jm.opts.RecoverJobs {
		return nil, false, ""
	}
	id := d.GetSummary().GetJobId()
	cfg, err := jobspec.CheckpointsOf(d.GetGraph())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ck, err = jm.openCheckpoints(ctx, id, d.GetGraph(), cfg, d.GetRestorePath(), d.GetAllowNonRestoredState())
	}
	if err != nil {
		jm.log.Warn("stored job: cannot open its checkpoints; not recovering it", "job", id, "err", err)
		return nil, false, "not recovered: " + err.Error()
	}
	return ck, st != clusterv1.JobStatus_JOB_STATUS_CREATED, ""
}

// openCheckpoints opens job id's checkpointing, which restores
// restorePath (a savepoint or checkpoint the job was submitted with) when
// it is set and the job has no completed checkpoint of its own. It does
// I/O.
func (jm *JobManager) openCheckpoints(ctx context.Context, id string, g *jobgraphv1.JobGraph, cfg jobspec.Checkpoints, restorePath string, allowNonRestored bool) (*jobmaster.Checkpoints, error) {
	ck, err := jobmaster.OpenCheckpoints(ctx, id, cfg, jm.opts.CheckpointStorage, jm.ha(), jm.log)
	if err != nil || restorePath == "" {
		return ck, err
	}
	r, err := jobmaster.OpenRestore(ctx, restorePath, g, allowNonRestored, jm.typeRegistry())
	if err != nil {
		ck.Close()
		return nil, err
	}
	ck.RestoreFrom(r)
	return ck, nil
}

// newMaster starts the job master of job d.
func (jm *JobManager) newMaster(d *clusterv1.JobDetails, plan *jobgraph.Plan, ck *jobmaster.Checkpoints, stored bool, now time.Time) *jobmaster.Master {
	return jm.startMaster(d, plan, ck, stored, false, "", now)
}

// startMaster starts the job master of job d; recover resumes a stored
// job that was running (high availability), why says why one is not.
func (jm *JobManager) startMaster(d *clusterv1.JobDetails, plan *jobgraph.Plan, ck *jobmaster.Checkpoints, stored, recover bool, why string, now time.Time) *jobmaster.Master {
	reason := why
	if recover {
		reason = fmt.Sprintf("JobManager %s took over as leader (epoch %d)", jm.id, jm.opts.LeaderEpoch)
	}
	return jobmaster.New(jobmaster.Config{
		Details: d, Plan: plan, Stored: stored, Restart: jm.restartStrategyOf(d.GetGraph()), Checkpoints: ck,
		Recover: recover, RecoverReason: reason,
		SlotTimeout: jm.opts.SlotTimeout, RPCTimeout: jm.opts.RPCTimeout, DefaultCheckpointStorage: jm.opts.CheckpointStorage,
		Executor: jm.exec, Logger: jm.log, Now: now, Stores: jm.opts.CompletedCheckpoints,
	})
}

func (jm *JobManager) addJob(m *jobmaster.Master) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	jm.jobs[m.ID()] = m
	jm.order = append(jm.order, m.ID())
}

// masters returns the job masters in submission order.
func (jm *JobManager) masters() []*jobmaster.Master {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	out := make([]*jobmaster.Master, 0, len(jm.order))
	for _, id := range jm.order {
		out = append(out, jm.jobs[id])
	}
	return out
}

// master returns the job master of job id, or nil.
func (jm *JobManager) master(id string) *jobmaster.Master {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	return jm.jobs[id]
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
	for {
		jm.schedule(time.Now())
		jm.reconcile()
		select {
		case <-ctx.Done():
			return
		case <-jm.done:
			return
		case <-jm.kick:
		case <-tick.C:
		}
	}
}

// Close stops every job master (and with it their timers and I/O),
// writes the job records still pending and closes the connections to
// TaskManagers.
func (jm *JobManager) Close() error {
	jm.mu.Lock()
	if jm.closed {
		jm.mu.Unlock()
		return nil
	}
	jm.closed = true
	close(jm.done)
	jm.mu.Unlock()
	for _, m := range jm.masters() {
		m.Close()
	}
	jm.persist.Close() // writes what is still pending
	jm.reg.Close()
	return nil
}

func (jm *JobManager) isClosed() bool {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	return jm.closed
}

func (jm *JobManager) wake() {
	select {
	case jm.kick <- struct{}{}:
	default:
	}
}

// schedule gives waiting jobs slots, in submission order. A job that gets
// none is told why (it fails after SlotTimeout).
func (jm *JobManager) schedule(now time.Time) {
	if jm.isClosed() {
		return
	}
	for _, m := range jm.masters() {
		v := m.View()
		if v.WantsSlots == 0 || m.Offering() {
			continue
		}
		slots, err := jm.reg.Allocate(v.WantsSlots)
		if err != nil {
			m.NoSlots(now, err.Error())
			continue
		}
		m.OfferSlots(now, slots)
	}
}

// reconcile compares what the TaskManagers reported running with what the
// jobs want, for their next heartbeat answers.
func (jm *JobManager) reconcile() {
	reports := jm.reg.Reports()
	if len(reports) == 0 {
		return
	}
	for tmID, running := range reports {
		var unwanted []*clusterv1.TaskID
		for _, t := range running {
			if m := jm.master(t.GetJobId()); m == nil || !m.View().Wants(t, tmID) {
				unwanted = append(unwanted, t)
			}
		}
		if len(unwanted) > 0 {
			jm.reg.SetUnwanted(tmID, unwanted)
		}
	}
}

// taskManagerGone fails every subtask a TaskManager that left service
// still ran (the registry calls it, without its lock).
func (jm *JobManager) taskManagerGone(id, reason string) {
	if jm.isClosed() {
		return
	}
	if strings.Contains(reason, " lost: ") || strings.Contains(reason, " unreachable: ") {
		jm.lostTotal.Inc()
		jm.log.Warn("taskmanager lost", "id", id, "reason", reason)
	}
	now := time.Now()
	for _, m := range jm.masters() {
		if !lifecycle.IsTerminal(m.View().Status()) {
			m.TaskManagerLost(now, id, reason)
		}
	}
	jm.wake()
}

// restartStrategyOf reads a graph's restart section (defaults: none).
func (jm *JobManager) restartStrategyOf(g *jobgraphv1.JobGraph) restart.Strategy {
	r, err := g.EffectiveRestartConfig()
	if err != nil {
		jm.log.Warn("bad restart section; not restarting", "job", g.GetName(), "err", err)
	}
	return restart.For(r, mathrand.Float64)
}

// ha are the job masters' replaceable stores.
func (jm *JobManager) ha() jobmaster.HA {
	return jobmaster.HA{IDs: jm.opts.CheckpointIDs, Stores: jm.opts.CompletedCheckpoints}
}

// NewID returns a new JobManager id, jm-<random>.
func NewID() string { return "jm-" + randomID(4) }

// shortStatus renders JOB_STATUS_RUNNING as RUNNING.
func shortStatus(s clusterv1.JobStatus) string { return lifecycle.ShortStatus(s) }

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
