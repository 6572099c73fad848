package jobmaster

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowrt/flow/pkg/jobgraph"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeExecutor records calls; deploy, when set, runs for each deployment.
type fakeExecutor struct {
	mu       sync.Mutex
	deployed []*clusterv1.TaskDeployment
	released [][]string
	saved    int
	deploy   func(ctx context.Context, tm string, d *clusterv1.TaskDeployment) error
	canceled []*clusterv1.TaskID
	// m, when set, hears CANCELED for each canceled subtask, as from a
	// TaskManager.
	m *Master
}

func (e *fakeExecutor) Deploy(ctx context.Context, tm string, d *clusterv1.TaskDeployment) error {
	e.mu.Lock()
	e.deployed = append(e.deployed, d)
	f := e.deploy
	e.mu.Unlock()
	if f != nil {
		return f(ctx, tm, d)
	}
	return nil
}

func (e *fakeExecutor) CancelTask(ctx context.Context, tm string, id *clusterv1.TaskID) error {
	e.mu.Lock()
	e.canceled = append(e.canceled, id)
	m := e.m
	e.mu.Unlock()
	if m != nil {
		return m.UpdateTaskState(ctx, time.Now(), &clusterv1.UpdateTaskStateRequest{TaskManagerId: tm, Task: id, State: clusterv1.TaskState_TASK_STATE_CANCELED})
	}
	return nil
}

func (e *fakeExecutor) TriggerCheckpoint(context.Context, string, *clusterv1.TriggerCheckpointRequest) error {
	return nil
}
func (e *fakeExecutor) NotifyCheckpoint(context.Context, string, *clusterv1.NotifyCheckpointRequest) error {
	return nil
}
func (e *fakeExecutor) MarkUnreachable(string, string) {}
func (e *fakeExecutor) Reachable(string) bool          { return true }
func (e *fakeExecutor) Address(tm string) string       { return tm + ":1" }
func (e *fakeExecutor) ReleaseSlots(s []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.released = append(e.released, s)
}
func (e *fakeExecutor) WantSlots() {}
func (e *fakeExecutor) SaveJob(*clusterv1.JobDetails) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.saved++
}

func (e *fakeExecutor) deployments() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.deployed)
}

func testMaster(t *testing.T, e *fakeExecutor) *Master {
	t.Helper()
	g := &jobgraphv1.JobGraph{Name: "t", Vertices: []*jobgraphv1.Vertex{
		{Id: "src", Type: "datagen", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SOURCE, Parallelism: 2},
		{Id: "sink", Type: "print", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SINK, Parallelism: 2},
	}, Edges: []*jobgraphv1.Edge{{Source: "src", Target: "sink", Partitioning: jobgraphv1.Partitioning_PARTITIONING_REBALANCE}}}
	plan, err := jobgraph.BuildPlan(g)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return New(Config{Details: NewDetails("job-1", g, plan, now), Plan: plan, SlotTimeout: time.Minute, RPCTimeout: time.Hour, Executor: e, Now: now})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// Close ends the master's I/O: a deployment stuck on a TaskManager that
// never answers (RPCTimeout one hour) is canceled, and no goroutine is
// left (goleak).
func TestCloseCancelsInFlightIO(t *testing.T) {
	stuck := make(chan error, 4)
	e := &fakeExecutor{deploy: func(ctx context.Context, _ string, _ *clusterv1.TaskDeployment) error {
		<-ctx.Done()
		stuck <- ctx.Err()
		return ctx.Err()
	}}
	m := testMaster(t, e)
	if v := m.View(); v.WantsSlots != 2 {
		t.Fatalf("a new job wants %d slots, want 2", v.WantsSlots)
	}
	m.OfferSlots(time.Now(), []string{"tm-a", "tm-b"})
	waitUntil(t, "4 deployments in flight", func() bool { return e.deployments() == 4 })
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the in-flight deployments")
	}
	for range 4 {
		if err := <-stuck; err != context.Canceled {
			t.Fatalf("a deployment ended with %v, want context.Canceled", err)
		}
	}
}

// A caller that was answered reads its own change: Cancel returns after
// the view showing it was published; the view is immutable afterwards.
func TestAnsweredCallersSeeTheirChange(t *testing.T) {
	e := &fakeExecutor{}
	m := testMaster(t, e)
	defer m.Close()
	m.OfferSlots(time.Now(), []string{"tm-a", "tm-b"})
	waitUntil(t, "the deployments", func() bool { return e.deployments() == 4 })
	d := e.deployed[0].GetId()
	if err := m.UpdateTaskState(context.Background(), time.Now(), &clusterv1.UpdateTaskStateRequest{
		TaskManagerId: []string{"tm-a", "tm-b"}[d.GetSubtask()], Task: d, State: clusterv1.TaskState_TASK_STATE_RUNNING}); err != nil {
		t.Fatal(err)
	}
	if st := m.View().Status(); st != clusterv1.JobStatus_JOB_STATUS_RUNNING {
		t.Fatalf("after a RUNNING report the view says %v", st)
	}
	before := m.View()
	if err := m.Cancel(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if st := m.View().Status(); st != clusterv1.JobStatus_JOB_STATUS_CANCELING {
		t.Fatalf("after Cancel the view says %v, want CANCELING", st)
	}
	if st := before.Status(); st != clusterv1.JobStatus_JOB_STATUS_RUNNING {
		t.Fatalf("an earlier view changed to %v", st)
	}
	select {
	case <-before.Changed:
	default:
		t.Fatal("the earlier view's Changed was not closed")
	}
	waitUntil(t, "cancel RPCs for the 4 subtasks", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.canceled) == 4
	})
}

// A deployment that finds its TaskManager unreachable fails the attempt
// but schedules the job again without using a restart attempt (the
// default strategy is none, which would fail the job).
func TestUnreachableDeploymentIsRescheduled(t *testing.T) {
	var once sync.Once
	e := &fakeExecutor{}
	e.deploy = func(_ context.Context, tm string, _ *clusterv1.TaskDeployment) error {
		var err error
		once.Do(func() { err = status.Error(codes.Unavailable, "connection refused") })
		return err
	}
	m := testMaster(t, e)
	defer m.Close()
	e.mu.Lock()
	e.m = m
	e.mu.Unlock()
	m.OfferSlots(time.Now(), []string{"tm-a", "tm-b"})
	waitUntil(t, "a restart that wants slots again", func() bool {
		v := m.View()
		return v.Status() == clusterv1.JobStatus_JOB_STATUS_RESTARTING && v.WantsSlots == 2 && v.Details.GetSummary().GetAttempt() == 2
	})
}

// A TaskManager lost while a checkpoint is in flight: the checkpoint fails
// naming the loss, the attempt's other subtasks are canceled, and the
// job (restart strategy none) fails; the checkpoint storage keeps nothing
// of the failed checkpoint.
func TestTaskManagerLostDuringACheckpoint(t *testing.T) {
	triggered := make(chan *clusterv1.TriggerCheckpointRequest, 16)
	e := &fakeExecutor{}
	g := &jobgraphv1.JobGraph{Name: "t", Vertices: []*jobgraphv1.Vertex{
		{Id: "src", Type: "datagen", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SOURCE, Parallelism: 2},
		{Id: "sink", Type: "print", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SINK, Parallelism: 2},
	}, Edges: []*jobgraphv1.Edge{{Source: "src", Target: "sink", Partitioning: jobgraphv1.Partitioning_PARTITIONING_REBALANCE}}}
	plan, err := jobgraph.BuildPlan(g)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := OpenCheckpoints(context.Background(), "job-1", CheckpointSettings{Interval: 20 * time.Millisecond, Timeout: time.Minute, MaxConcurrent: 1, TolerableFailures: 3, Retain: 1},
		"file://"+t.TempDir(), HA{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m := New(Config{Details: NewDetails("job-1", g, plan, now), Plan: plan, Checkpoints: ck, SlotTimeout: time.Minute, RPCTimeout: time.Hour,
		Executor: &triggerRecorder{fakeExecutor: e, triggered: triggered}, Now: now})
	defer m.Close()
	e.mu.Lock()
	e.m = m
	e.mu.Unlock()
	m.OfferSlots(time.Now(), []string{"tm-a", "tm-b"})
	waitUntil(t, "the deployments", func() bool { return e.deployments() == 4 })
	e.mu.Lock()
	deps := append([]*clusterv1.TaskDeployment(nil), e.deployed...)
	e.mu.Unlock()
	for _, d := range deps {
		if err := m.UpdateTaskState(context.Background(), time.Now(), &clusterv1.UpdateTaskStateRequest{
			TaskManagerId: []string{"tm-a", "tm-b"}[d.GetId().GetSubtask()], Task: d.GetId(), State: clusterv1.TaskState_TASK_STATE_RUNNING}); err != nil {
			t.Fatal(err)
		}
	}
	var req *clusterv1.TriggerCheckpointRequest
	select {
	case req = <-triggered:
	case <-time.After(10 * time.Second):
		t.Fatal("no checkpoint was triggered")
	}
	m.TaskManagerLost(time.Now(), "tm-b", "TaskManager tm-b lost: no heartbeat for 2s")
	waitUntil(t, "the job FAILED", func() bool { return m.View().Status() == clusterv1.JobStatus_JOB_STATUS_FAILED })
	v := m.View()
	var info *clusterv1.CheckpointInfo
	for _, c := range v.Checkpoints {
		if c.GetId() == req.GetCheckpointId() {
			info = c
		}
	}
	if info == nil || info.GetStatus() != clusterv1.CheckpointStatus_CHECKPOINT_STATUS_FAILED || !strings.Contains(info.GetFailure(), "tm-b lost") {
		t.Fatalf("checkpoint %d after the loss: %v", req.GetCheckpointId(), info)
	}
	if f := v.Details.GetSummary().GetFailure(); !strings.Contains(f, "tm-b lost") || !strings.Contains(f, "not restarted") {
		t.Fatalf("job failure %q should name the loss and the restart strategy", f)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range e.canceled {
		if id.GetSubtask() == 1 {
			t.Fatalf("subtask %s/%d of the lost TaskManager was asked to cancel", id.GetTask(), id.GetSubtask())
		}
	}
	if len(e.canceled) != 2 {
		t.Fatalf("%d subtasks canceled, want the 2 on tm-a", len(e.canceled))
	}
}

// triggerRecorder records checkpoint triggers.
type triggerRecorder struct {
	*fakeExecutor
	triggered chan *clusterv1.TriggerCheckpointRequest
}

func (r *triggerRecorder) TriggerCheckpoint(_ context.Context, _ string, req *clusterv1.TriggerCheckpointRequest) error {
	select {
	case r.triggered <- req:
	default:
	}
	return nil
}
