package jobmaster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/jobmanager/ha"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/jobgraph"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// idRecorder records the ids of the checkpoint triggers sent.
type idRecorder struct {
	*fakeExecutor
	mu  sync.Mutex
	ids []int64
}

func (r *idRecorder) TriggerCheckpoint(_ context.Context, _ string, req *clusterv1.TriggerCheckpointRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, req.GetCheckpointId())
	return nil
}

func (r *idRecorder) sent() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.ids...)
}

// runningMaster starts job-1 with checkpoints in storeURL and ids from
// ids, with every subtask RUNNING.
func runningMaster(t *testing.T, storeURL string, ids ha.CheckpointIDCounter) (*Master, *idRecorder) {
	t.Helper()
	g := &jobgraphv1.JobGraph{Name: "t", Vertices: []*jobgraphv1.Vertex{
		{Id: "src", Type: "datagen", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SOURCE, Parallelism: 1},
		{Id: "sink", Type: "print", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SINK, Parallelism: 1},
	}, Edges: []*jobgraphv1.Edge{{Source: "src", Target: "sink", Partitioning: jobgraphv1.Partitioning_PARTITIONING_FORWARD}}}
	plan, err := jobgraph.BuildPlan(g)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := OpenCheckpoints(context.Background(), "job-1", CheckpointSettings{Interval: 10 * time.Millisecond, Timeout: time.Minute, MaxConcurrent: 1, TolerableFailures: 100, Retain: 1},
		storeURL, HA{IDs: ids}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &fakeExecutor{}
	rec := &idRecorder{fakeExecutor: e}
	now := time.Now()
	m := New(Config{Details: NewDetails("job-1", g, plan, now), Plan: plan, Checkpoints: ck, SlotTimeout: time.Minute, RPCTimeout: time.Hour, Executor: rec, Now: now})
	e.mu.Lock()
	e.m = m
	e.mu.Unlock()
	m.OfferSlots(time.Now(), []string{"tm-a"})
	waitUntil(t, "the deployments", func() bool { return e.deployments() == plan.TotalSubtasks() })
	e.mu.Lock()
	deps := append([]*clusterv1.TaskDeployment(nil), e.deployed...)
	e.mu.Unlock()
	for _, d := range deps {
		if err := m.UpdateTaskState(context.Background(), time.Now(), &clusterv1.UpdateTaskStateRequest{
			TaskManagerId: "tm-a", Task: d.GetId(), State: clusterv1.TaskState_TASK_STATE_RUNNING}); err != nil {
			t.Fatal(err)
		}
	}
	return m, rec
}

// After a JobManager restart a job's checkpoint ids continue above every
// id ever issued, not above the newest completed checkpoint in storage:
// checkpoint 1 completed, checkpoint 2 was declined (and more may have
// been in flight), and the job master that starts again on the same data
// must not issue 2 again (its acknowledgements and files could mix with
// the old one's).
func TestCheckpointIDsNeverRepeatAfterARestart(t *testing.T) {
	ctx := context.Background()
	storeURL := "file://" + t.TempDir()
	haDir := t.TempDir()
	s, err := storage.Open(ctx, storeURL)
	if err != nil {
		t.Fatal(err)
	}
	js, _, err := storage.OpenJob(ctx, s, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := js.Complete(ctx, &checkpointv1.CheckpointMetadata{JobId: "job-1", CheckpointId: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	m, rec := runningMaster(t, storeURL, ha.NewFileCounter(haDir))
	waitUntil(t, "checkpoint 2 triggered", func() bool { return len(rec.sent()) > 0 })
	if first := rec.sent()[0]; first != 2 {
		m.Close()
		t.Fatalf("the first checkpoint after completed checkpoint 1 got id %d, want 2", first)
	}
	if err := m.Decline(ctx, time.Now(), &clusterv1.DeclineCheckpointRequest{
		Task: &clusterv1.TaskID{JobId: "job-1", Attempt: 1, Task: "src"}, CheckpointId: 2, Reason: "declined: test"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "checkpoint 2 FAILED", func() bool {
		for _, c := range m.View().Checkpoints {
			if c.GetId() == 2 {
				return c.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_FAILED
			}
		}
		return false
	})
	m.Close() // the JobManager stops with checkpoint 2 failed, maybe 3 in flight
	var highest int64
	for _, id := range rec.sent() {
		highest = max(highest, id)
	}

	m2, rec2 := runningMaster(t, storeURL, ha.NewFileCounter(haDir))
	defer m2.Close()
	waitUntil(t, "a checkpoint triggered after the restart", func() bool { return len(rec2.sent()) > 0 })
	if got := rec2.sent()[0]; got <= highest {
		t.Fatalf("after the restart checkpoint id %d was issued again (ids up to %d were issued before)", got, highest)
	}
}

// Without a counter (or with a counter behind the storage: a data dir
// from before the counter), ids continue above the newest checkpoint in
// storage.
func TestCheckpointIDsContinueAboveStorage(t *testing.T) {
	ctx := context.Background()
	storeURL := "file://" + t.TempDir()
	s, err := storage.Open(ctx, storeURL)
	if err != nil {
		t.Fatal(err)
	}
	js, _, err := storage.OpenJob(ctx, s, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := js.Complete(ctx, &checkpointv1.CheckpointMetadata{JobId: "job-1", CheckpointId: 5}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ids := ha.NewFileCounter(t.TempDir())
	if err := ids.SetAtLeast(ctx, "job-1", 3); err != nil {
		t.Fatal(err)
	}
	m, rec := runningMaster(t, storeURL, ids)
	defer m.Close()
	waitUntil(t, "a checkpoint triggered", func() bool { return len(rec.sent()) > 0 })
	if got := rec.sent()[0]; got != 6 {
		t.Fatalf("first id %d, want 6 (above checkpoint 5 in storage)", got)
	}
	if n, err := ids.Get(ctx, "job-1"); err != nil || n < 6 {
		t.Fatalf("the counter holds %d (%v) after id 6 was triggered", n, err)
	}
}
