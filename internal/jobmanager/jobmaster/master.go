package jobmaster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/internal/jobmanager/lifecycle"
	"github.com/flowrt/flow/internal/jobmanager/restart"
	"github.com/flowrt/flow/pkg/jobgraph"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// ErrClosed is returned by requests to a job master that was closed.
var ErrClosed = errors.New("the job master is closed")

// Config describe one job to its master.
type Config struct {
	// Details is the job's record: a new job in CREATED, or one loaded
	// from the job store (set Stored).
	Details *clusterv1.JobDetails
	// Plan is the job's task plan; nil for a stored job whose graph no
	// longer plans (it is listed, never scheduled).
	Plan *jobgraph.Plan
	// Stored: the job was loaded by a restarted JobManager. A job past
	// waiting for slots then fails, and the checkpoint history is read back
	// from its storage.
	Stored bool
	// Recover: this JobManager took over as leader (high availability);
	// a stored job that was running resumes as its next attempt from its
	// latest checkpoint instead of failing. RecoverReason names the
	// takeover in the job's history (without Recover: why a running job
	// was not recovered, if it was meant to be).
	Recover       bool
	RecoverReason string
	// Restart decides what a failure leads to.
	Restart restart.Strategy
	// Checkpoints is the job's checkpointing (OpenCheckpoints); nil:
	// savepoints only.
	Checkpoints *Checkpoints
	// SlotTimeout: a job that cannot get enough slots for this long fails.
	SlotTimeout time.Duration
	// DefaultCheckpointStorage is the storage of jobs whose checkpoint
	// section names none (read back for a stored job's history).
	DefaultCheckpointStorage string
	// RPCTimeout bounds each call to a TaskManager.
	RPCTimeout time.Duration
	// TickInterval is how often the checkpoint coordinator and the
	// lifecycle are ticked. Default 20ms.
	TickInterval time.Duration
	// DrainGrace is how long the tasks of a job stopped with a savepoint
	// may take to confirm its commit (or, drained, to finish) before they
	// are canceled. Default 30s.
	DrainGrace time.Duration
	Executor   Executor
	Logger     *slog.Logger
	// Stores opens the job's completed-checkpoint store to read its
	// history after a JobManager restart; nil: OpenFileStore.
	Stores StoreOpener
	// Now is when the job starts waiting for slots.
	Now time.Time
}

// Master is the job master of one job: one goroutine that owns the job's
// lifecycle machine, its checkpoint coordinator and its deployments.
// Its methods may be called from any goroutine: they send events to the
// loop and, where they answer, wait for it.
type Master struct {
	cfg  Config
	id   string
	log  *slog.Logger
	exec Executor
	plan *jobgraph.Plan

	events chan any
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// io tracks the goroutines of the master's I/O; they end with ctx.
	io sync.WaitGroup

	// Owned by the loop.
	lc  *lifecycle.Machine
	ck  *Checkpoints
	now time.Time // the time of the event being handled
	// dirty: publish a new view; persist: store the record with it.
	dirty, persist bool
	// replies run after the next publish, so that a caller that was
	// answered reads its own change; deferred is the I/O to start then.
	replies  []func()
	deferred []func(ctx context.Context)
	// drain is the stop-with-savepoint (drained) whose grace ends at
	// drainAt.
	drainAt      time.Time
	drainAttempt int32
	drainPath    string

	// Read by other goroutines.
	view     atomic.Pointer[View]
	attempt  atomic.Int32 // the current attempt while the job is not terminal, else 0
	offering atomic.Bool  // the scheduler's slot grant is on its way
}

// New returns the master of one job and starts its loop. Close stops it.
func New(cfg Config) *Master {
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 20 * time.Millisecond
	}
	if cfg.DrainGrace <= 0 {
		cfg.DrainGrace = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Restart == nil {
		cfg.Restart = restart.For(nil, nil)
	}
	ck := cfg.Checkpoints
	if ck == nil {
		ck = newCheckpoints(CheckpointSettings{})
	}
	m := &Master{
		cfg: cfg, id: cfg.Details.GetSummary().GetJobId(), log: cfg.Logger, exec: cfg.Executor, plan: cfg.Plan,
		events: make(chan any, 256), done: make(chan struct{}),
		lc: lifecycle.New(cfg.Details, cfg.Restart, cfg.SlotTimeout, cfg.Now), ck: ck, now: cfg.Now,
	}
	ck.m = m
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if cfg.Stored {
		m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventJobManagerRestarted, Time: cfg.Now, NoPlan: cfg.Plan == nil,
			Recover: cfg.Recover, Reason: cfg.RecoverReason})
		m.recoverHistory()
	}
	m.publish()
	m.startIO()
	go m.run()
	return m
}

// ID is the job's id.
func (m *Master) ID() string { return m.id }

// View is the job as last published.
func (m *Master) View() *View { return m.view.Load() }

// Close stops the loop and the master's I/O and closes the job's
// checkpoint storage.
func (m *Master) Close() {
	m.cancel()
	<-m.done
	m.io.Wait()
	m.ck.close()
}

// Done is closed when the master's loop ended (Close).
func (m *Master) Done() <-chan struct{} { return m.done }

// post sends an event to the loop; false when the master is closed.
func (m *Master) post(ev any) bool {
	select {
	case m.events <- ev:
		return true
	case <-m.ctx.Done():
		return false
	}
}

// goIO runs f in a goroutine of the master's I/O once the view that
// shows the change behind it is published (so no TaskManager can report
// a deployment the view does not know yet); ctx ends at Close. Call it on
// the loop only.
func (m *Master) goIO(f func(ctx context.Context)) { m.deferred = append(m.deferred, f) }

// startIO starts the I/O that goIO deferred.
func (m *Master) startIO() {
	for _, f := range m.deferred {
		m.io.Add(1)
		go func() {
			defer m.io.Done()
			f(m.ctx)
		}()
	}
	clear(m.deferred)
	m.deferred = m.deferred[:0]
}

func (m *Master) run() {
	defer close(m.done)
	tick := time.NewTicker(m.cfg.TickInterval)
	defer tick.Stop()
	for {
		// A job that ended needs no ticks (raft's node.go disables a
		// channel by setting it to nil).
		tickC := tick.C
		if m.attempt.Load() == 0 {
			tickC = nil
		}
		select {
		case <-m.ctx.Done():
			return
		case ev := <-m.events:
			m.handle(ev)
		drain:
			for n := 0; n < cap(m.events); n++ {
				select {
				case ev := <-m.events:
					m.handle(ev)
				default:
					break drain
				}
			}
		case now := <-tickC:
			m.tick(now)
		}
		if m.dirty {
			m.publish()
		}
		m.startIO()
		for _, f := range m.replies {
			f()
		}
		m.replies = m.replies[:0]
	}
}

// tick steps the lifecycle (restart delays), the drain grace of a stop
// and the checkpoint coordinator with the ticker's time.
func (m *Master) tick(now time.Time) {
	if m.attempt.Load() == 0 {
		return
	}
	m.now = now
	m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventTick, Time: now})
	if !m.drainAt.IsZero() && !now.Before(m.drainAt) {
		m.drainAt = time.Time{}
		m.stepLifecycle(lifecycle.Event{Type: lifecycle.EventStop, Time: now, Attempt: m.drainAttempt, Path: m.drainPath})
	}
	m.ck.tick(now)
}

// View is an immutable snapshot of a job, published by its master after
// every change. RPC handlers, metrics and the scheduler read it without
// asking the loop.
type View struct {
	// Details is the job's record (shared: clone before changing it).
	Details *clusterv1.JobDetails
	// Note is a transient status message (waiting for slots, ...).
	Note string
	// Checkpoints is the checkpoint history, newest first (shared).
	Checkpoints []*clusterv1.CheckpointInfo
	// LatestPath is what the next restart restores ("" if nothing).
	LatestPath string
	// CanSavepoint: the job runs and its coordinator takes savepoints.
	CanSavepoint bool
	// WantsSlots is the number of slots the job waits for (0: none).
	WantsSlots int
	// Stats are the checkpoint counters; Job the lifecycle figures.
	Stats CheckpointStats
	Job   JobStats
	// Changed is closed when a newer view is published.
	Changed <-chan struct{}
	changed chan struct{}
}

// Status is the job's status.
func (v *View) Status() clusterv1.JobStatus { return v.Details.GetSummary().GetStatus() }

// Wants reports whether the job expects task t to be running on
// TaskManager tm.
func (v *View) Wants(t *clusterv1.TaskID, tm string) bool {
	sum := v.Details.GetSummary()
	if sum.GetAttempt() != t.GetAttempt() || lifecycle.IsTerminal(sum.GetStatus()) {
		return false
	}
	for _, ti := range v.Details.GetTasks() {
		if ti.GetId() != t.GetTask() {
			continue
		}
		subs := ti.GetSubtasks()
		if i := t.GetSubtask(); i >= 0 && int(i) < len(subs) {
			s := subs[i]
			return s.GetTaskManagerId() == tm && !lifecycle.IsTerminalTask(s.GetState())
		}
	}
	return false
}

// publish swaps in a new view and wakes the watchers of the old one.
func (m *Master) publish() {
	m.dirty = false
	d := m.lc.Details()
	g := d.Graph
	d.Graph = nil
	c := proto.Clone(d).(*clusterv1.JobDetails)
	d.Graph = g
	c.Graph = g // never changed after submission
	v := &View{Details: c, Note: m.lc.Note(), changed: make(chan struct{})}
	v.Changed = v.changed
	v.Checkpoints, v.LatestPath = m.ck.published()
	v.CanSavepoint = m.lc.Status() == clusterv1.JobStatus_JOB_STATUS_RUNNING && m.ck.coord != nil
	v.Stats = m.ck.stats
	for _, info := range v.Checkpoints {
		if info.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_IN_PROGRESS {
			v.Stats.InProgress++
		}
	}
	v.Job.Restarts = max(m.lc.Attempt()-1, 0)
	if m.lc.Status() == clusterv1.JobStatus_JOB_STATUS_RUNNING {
		v.Job.RunningSince = runningSince(c)
	}
	if m.plan != nil && m.lc.WantsSlots() {
		v.WantsSlots = MaxParallelism(m.plan)
	}
	if lifecycle.IsTerminal(m.lc.Status()) {
		m.attempt.Store(0)
	} else {
		m.attempt.Store(m.lc.Attempt())
	}
	if old := m.view.Swap(v); old != nil {
		close(old.changed)
	}
	if m.persist {
		m.persist = false
		m.exec.SaveJob(c)
	}
}

// runningSince is when the job last became RUNNING, from its history.
func runningSince(d *clusterv1.JobDetails) time.Time {
	h := d.GetHistory()
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].GetStatus() == clusterv1.JobStatus_JOB_STATUS_RUNNING {
			return time.UnixMilli(h[i].GetTimeMs())
		}
	}
	return time.Time{}
}

// attemptLive reports, from any goroutine, whether attempt is the job's
// current one and the job has not ended.
func (m *Master) attemptLive(attempt int32) bool {
	return m.ctx.Err() == nil && m.attempt.Load() == attempt
}

// MaxParallelism is the number of slots a job of plan p needs: its
// largest parallelism (slot sharing).
func MaxParallelism(p *jobgraph.Plan) int {
	n := 0
	for _, t := range p.Tasks {
		n = max(n, t.Parallelism)
	}
	return n
}

func shortStatus(s clusterv1.JobStatus) string { return lifecycle.ShortStatus(s) }

// NewDetails is the record of a job just submitted: CREATED, attempt 1,
// every subtask of plan not yet deployed.
func NewDetails(id string, g *jobgraphv1.JobGraph, plan *jobgraph.Plan, now time.Time) *clusterv1.JobDetails {
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
	return d
}
