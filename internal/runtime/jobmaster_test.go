package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flowrt/flow/internal/jobmanager/jobmaster"
	"github.com/flowrt/flow/internal/jobmanager/restart"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/jobgraph"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// testCoordinator runs a job's attempts on the test harness through the
// JobManager's real job master (internal/jobmanager/jobmaster): the master
// decides the deployments (with their restore sections), the
// checkpoints (metadata written last to real storage) and the restarts;
// its Executor here stands for the TaskManagers: a deployment hands the
// subtask's control mailbox and checkpoint responder to the harness,
// which runs it with RunTask, and the subtask's states, acks and declines
// go back to the master. A changed graph (rescaling) is a new job
// restored from the latest completed checkpoint or savepoint, as
// `flowctl run --from-checkpoint` does.
type testCoordinator struct {
	t        testing.TB
	g        *jobgraphv1.JobGraph
	storeURL string
	opts     *clusterv1.CheckpointOptions // Unaligned, AlignedTimeoutMs, Incremental

	m      *jobmaster.Master
	mg     *jobgraphv1.JobGraph // the graph of m
	exec   *testExecutor
	spDir  string
	closed []*jobmaster.Master

	// mu guards what the view watcher of master generation gen records.
	mu        sync.Mutex
	gen       int
	completed []uint64
	aborted   map[uint64]string
	declines  []string
	paths     map[uint64]string // directory of each completed checkpoint
	durations map[uint64]time.Duration
	latest    *checkpointv1.CheckpointMetadata
}

func newTestCoordinator(t testing.TB, g *jobgraphv1.JobGraph, storeURL string, opts *clusterv1.CheckpointOptions) *testCoordinator {
	t.Helper()
	if opts == nil {
		opts = &clusterv1.CheckpointOptions{}
	}
	c := &testCoordinator{t: t, g: g, storeURL: storeURL, opts: opts, spDir: "file://" + t.TempDir()}
	c.reset()
	t.Cleanup(func() {
		if c.m != nil {
			c.m.Close()
		}
	})
	return c
}

func (c *testCoordinator) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.completed, c.aborted, c.paths, c.durations, c.latest = nil, map[uint64]string{}, map[uint64]string{}, map[uint64]time.Duration{}, nil
}

// start prepares the next attempt, checkpointing every interval: the
// first, a restart of the same graph after halt, or (graph changed) a new
// job restored from the latest snapshot. The returned jobOptions have
// startJob deploy what the master decides.
func (c *testCoordinator) start(o jobOptions, interval time.Duration) jobOptions {
	c.t.Helper()
	if c.m == nil || c.g != c.mg {
		c.newMaster(interval)
	}
	exec := c.exec
	o.deploy = exec.awaitDeployments
	o.env = exec.wire
	o.started = func(j *job) { exec.setCancel(j.cancel) }
	prevDone := o.done
	o.done = func(d *clusterv1.TaskDeployment, err error) {
		exec.report(d, err)
		if prevDone != nil {
			prevDone(d, err)
		}
	}
	return o
}

func (c *testCoordinator) newMaster(interval time.Duration) {
	t := c.t
	t.Helper()
	ctx := context.Background()
	var restore *jobmaster.RestorePoint
	if c.m != nil {
		// Close first, then take the final view: the watcher may lag
		// behind the last completion, whose notification the sinks may
		// already have committed (a completion is notified only after
		// the view that shows it is published).
		c.m.Close()
		c.mu.Lock()
		gen := c.gen
		c.mu.Unlock()
		c.record(c.m.View(), gen)
		if md := c.latestMetadata(); md != nil {
			c.mu.Lock()
			path := c.paths[uint64(md.GetCheckpointId())]
			c.mu.Unlock()
			r, err := jobmaster.OpenRestore(ctx, path, c.g, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			restore = r
		}
		c.reset()
	}
	cfg := jobmaster.CheckpointSettings{Interval: interval, Timeout: time.Minute, TolerableFailures: -1, Retain: 2,
		Unaligned: c.opts.GetUnaligned(), AlignedTimeout: time.Duration(c.opts.GetAlignedTimeoutMs()) * time.Millisecond,
		Incremental: c.opts.GetIncremental(), RetainOnCancel: true}
	ck, err := jobmaster.OpenCheckpoints(ctx, "job-1", cfg, c.storeURL, jobmaster.HA{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if restore != nil {
		ck.RestoreFrom(restore)
	}
	plan, err := jobgraph.BuildPlan(c.g)
	if err != nil {
		t.Fatal(err)
	}
	c.exec = &testExecutor{c: c, controls: map[string]chan any{}, plan: plan, got: make(chan struct{}, 1)}
	now := time.Now()
	c.m = jobmaster.New(jobmaster.Config{
		Details: jobmaster.NewDetails("job-1", c.g, plan, now), Plan: plan, Checkpoints: ck,
		Restart: restart.For(&jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY,
			Attempts: proto.Int32(1000), Delay: durationpb.New(0)}, nil),
		SlotTimeout: time.Minute, RPCTimeout: 10 * time.Second, TickInterval: 10 * time.Millisecond, Executor: c.exec, Now: now,
	})
	c.mg = c.g
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	go c.watch(c.m, gen)
}

// watch records what the master's views show of the checkpoints, until
// the master closes.
func (c *testCoordinator) watch(m *jobmaster.Master, gen int) {
	for {
		v := m.View()
		c.record(v, gen)
		select {
		case <-v.Changed:
		case <-m.Done():
			return
		}
	}
}

func (c *testCoordinator) record(v *jobmaster.View, gen int) {
	var fresh []*clusterv1.CheckpointInfo
	c.mu.Lock()
	if c.gen != gen {
		c.mu.Unlock()
		return // a master replaced meanwhile
	}
	for i := len(v.Checkpoints) - 1; i >= 0; i-- { // oldest first
		info := v.Checkpoints[i]
		id := uint64(info.GetId())
		switch info.GetStatus() {
		case clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED:
			if !slices.Contains(c.completed, id) {
				fresh = append(fresh, info)
			}
		case clusterv1.CheckpointStatus_CHECKPOINT_STATUS_FAILED:
			c.aborted[id] = info.GetFailure()
		}
	}
	c.mu.Unlock()
	if len(fresh) == 0 {
		return
	}
	// The newest one's metadata is recorded with it: a checkpoint counts as
	// completed here once its metadata can be read.
	md, _ := storage.ReadMetadata(context.Background(), fresh[len(fresh)-1].GetPath())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	for _, info := range fresh {
		id := uint64(info.GetId())
		c.completed = append(c.completed, id)
		c.paths[id] = info.GetPath()
		c.durations[id] = time.Duration(info.GetDurationMs()) * time.Millisecond
	}
	if md != nil && (c.latest == nil || md.GetCheckpointId() > c.latest.GetCheckpointId()) {
		c.latest = md
	}
}

// halt waits until the attempt ended: the job restarts (the next start
// deploys it again) or it ended.
func (c *testCoordinator) halt() {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		switch c.m.View().Status() {
		case clusterv1.JobStatus_JOB_STATUS_RESTARTING, clusterv1.JobStatus_JOB_STATUS_FINISHED,
			clusterv1.JobStatus_JOB_STATUS_CANCELED, clusterv1.JobStatus_JOB_STATUS_FAILED:
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the job master did not end the attempt: %s (%s)", c.m.View().Status(), c.m.View().Note)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// filesOf opens the storage the file paths of snapshot md are relative
// to: a savepoint's own directory, or the checkpoint storage.
func (c *testCoordinator) filesOf(t *testing.T, md *checkpointv1.CheckpointMetadata) *storage.Storage {
	t.Helper()
	base := c.storeURL
	if md.GetSavepoint() {
		c.mu.Lock()
		base = c.paths[uint64(md.GetCheckpointId())]
		c.mu.Unlock()
	}
	s, err := storage.Open(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (c *testCoordinator) completedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.completed)
}

func (c *testCoordinator) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("completed %v aborted %v declines %v", c.completed, c.aborted, c.declines)
}

// firstDuration returns the trigger-to-completion time of the first
// completed checkpoint.
func (c *testCoordinator) firstDuration() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.completed) == 0 {
		return 0, false
	}
	return c.durations[c.completed[0]], true
}

// latestMetadata is the latest completed checkpoint's metadata (nil before
// the first).
func (c *testCoordinator) latestMetadata() *checkpointv1.CheckpointMetadata {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest
}

// testExecutor is the job master's Executor over the harness: slot i is
// TaskManager "tm-<i mod managers>", the harness's exchange manager of
// that index.
type testExecutor struct {
	c    *testCoordinator
	plan *jobgraph.Plan

	mu       sync.Mutex
	addrs    []string
	deps     []*clusterv1.TaskDeployment // of the attempt being deployed
	controls map[string]chan any         // by "attempt/task/subtask"
	cancel   context.CancelFunc          // the running attempt's
	got      chan struct{}
}

func controlKey(id *clusterv1.TaskID) string {
	return fmt.Sprintf("%d/%s/%d", id.GetAttempt(), id.GetTask(), id.GetSubtask())
}

func tmOf(id *clusterv1.TaskID, managers int) string {
	return fmt.Sprintf("tm-%d", int(id.GetSubtask())%managers)
}

// awaitDeployments gives the waiting job its slots and returns the
// deployments the master sent.
func (e *testExecutor) awaitDeployments(addrs []string) []*clusterv1.TaskDeployment {
	t := e.c.t
	t.Helper()
	m := e.c.m
	e.mu.Lock()
	e.addrs, e.deps = addrs, nil
	e.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for m.View().WantsSlots == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the job master does not want slots: %s (%s)", m.View().Status(), m.View().Note)
		}
		time.Sleep(5 * time.Millisecond)
	}
	slots := make([]string, m.View().WantsSlots)
	for i := range slots {
		slots[i] = fmt.Sprintf("tm-%d", i%len(addrs))
	}
	m.OfferSlots(time.Now(), slots)
	for {
		e.mu.Lock()
		n := len(e.deps)
		e.mu.Unlock()
		if n == e.plan.TotalSubtasks() {
			break
		}
		select {
		case <-e.got:
		case <-time.After(time.Until(deadline)):
			t.Fatalf("the job master deployed %d of %d subtasks", n, e.plan.TotalSubtasks())
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	deps := slices.Clone(e.deps)
	sort.Slice(deps, func(i, j int) bool { return controlKey(deps[i].GetId()) < controlKey(deps[j].GetId()) })
	return deps
}

// wire completes a subtask's TaskEnv as a TaskManager does: its control
// mailbox and a checkpoint responder that reports to the master; the
// subtask is RUNNING from here.
func (e *testExecutor) wire(d *clusterv1.TaskDeployment, env *TaskEnv) {
	e.mu.Lock()
	env.Control = e.controls[controlKey(d.GetId())]
	n := len(e.addrs)
	e.mu.Unlock()
	env.Checkpoints = &testResponder{c: e.c, m: e.c.m, task: d.GetId()}
	_ = e.c.m.UpdateTaskState(context.Background(), time.Now(), &clusterv1.UpdateTaskStateRequest{
		TaskManagerId: tmOf(d.GetId(), n), Task: d.GetId(), State: clusterv1.TaskState_TASK_STATE_RUNNING})
}

// report tells the master how a subtask ended.
func (e *testExecutor) report(d *clusterv1.TaskDeployment, err error) {
	e.mu.Lock()
	n := len(e.addrs)
	e.mu.Unlock()
	req := &clusterv1.UpdateTaskStateRequest{TaskManagerId: tmOf(d.GetId(), n), Task: d.GetId(), State: clusterv1.TaskState_TASK_STATE_FINISHED}
	switch {
	case err != nil && isCanceled(err):
		req.State = clusterv1.TaskState_TASK_STATE_CANCELED
	case err != nil:
		req.State, req.Failure = clusterv1.TaskState_TASK_STATE_FAILED, err.Error()
	}
	_ = e.c.m.UpdateTaskState(context.Background(), time.Now(), req)
}

func (e *testExecutor) setCancel(cancel context.CancelFunc) {
	e.mu.Lock()
	e.cancel = cancel
	e.mu.Unlock()
}

func (e *testExecutor) Deploy(_ context.Context, _ string, d *clusterv1.TaskDeployment) error {
	e.mu.Lock()
	e.deps = append(e.deps, d)
	e.controls[controlKey(d.GetId())] = make(chan any, 16)
	e.mu.Unlock()
	select {
	case e.got <- struct{}{}:
	default:
	}
	return nil
}

// CancelTask cancels the attempt (the harness cancels every subtask
// together; the master cancels all but the failed ones anyway).
func (e *testExecutor) CancelTask(context.Context, string, *clusterv1.TaskID) error {
	e.mu.Lock()
	cancel := e.cancel
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return nil
}

func (e *testExecutor) TriggerCheckpoint(_ context.Context, _ string, req *clusterv1.TriggerCheckpointRequest) error {
	e.mu.Lock()
	ch := e.controls[controlKey(req.GetTask())]
	e.mu.Unlock()
	select {
	case ch <- TriggerCheckpoint{ID: req.GetCheckpointId(), TimestampMs: req.GetTimestampMs(), Options: req.GetOptions()}:
		return nil
	default:
		return status.Error(codes.NotFound, "the subtask's mailbox is full")
	}
}

func (e *testExecutor) NotifyCheckpoint(_ context.Context, tm string, req *clusterv1.NotifyCheckpointRequest) error {
	prefix := fmt.Sprintf("%d/", req.GetAttempt())
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.deps {
		if ch := e.controls[controlKey(d.GetId())]; strings.HasPrefix(controlKey(d.GetId()), prefix) && tmOf(d.GetId(), len(e.addrs)) == tm {
			select {
			case ch <- NotifyCheckpoint{ID: req.GetCheckpointId(), Completed: req.GetCompleted()}:
			default:
			}
		}
	}
	return nil
}

func (e *testExecutor) MarkUnreachable(string, string) {}
func (e *testExecutor) Reachable(string) bool          { return true }

func (e *testExecutor) Address(tm string) string {
	var i int
	fmt.Sscanf(tm, "tm-%d", &i)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addrs[i]
}

func (e *testExecutor) ReleaseSlots([]string)         {}
func (e *testExecutor) WantSlots()                    {}
func (e *testExecutor) SaveJob(*clusterv1.JobDetails) {}

// testResponder is one subtask's CheckpointResponder: it reports to the
// job master as a TaskManager's RPCs do.
type testResponder struct {
	c    *testCoordinator
	m    *jobmaster.Master
	task *clusterv1.TaskID
}

func (r *testResponder) Acknowledge(ctx context.Context, id int64, ops map[string]*checkpointv1.SubtaskState, timing *clusterv1.TaskCheckpointTiming) error {
	req := &clusterv1.AcknowledgeCheckpointRequest{Task: r.task, CheckpointId: id, Operators: ops, Timing: timing}
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	return r.m.Acknowledge(ctx, time.Now(), req, b)
}

func (r *testResponder) Decline(ctx context.Context, id int64, reason string) error {
	r.c.mu.Lock()
	r.c.declines = append(r.c.declines, fmt.Sprintf("%d %s/%d: %s", id, r.task.GetTask(), r.task.GetSubtask(), reason))
	r.c.mu.Unlock()
	return r.m.Decline(ctx, time.Now(), &clusterv1.DeclineCheckpointRequest{Task: r.task, CheckpointId: id, Reason: reason})
}
