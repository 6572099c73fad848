package runtime

import (
	"context"
	"sync"
	"testing"

	"github.com/flowrt/flow/internal/exchange"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// ackRecorder is a CheckpointResponder that records acknowledged ids.
type ackRecorder struct {
	mu    sync.Mutex
	acked []int64
}

func (r *ackRecorder) Acknowledge(_ context.Context, id int64, _ map[string]*checkpointv1.SubtaskState, _ *clusterv1.TaskCheckpointTiming) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acked = append(r.acked, id)
	return nil
}

func (r *ackRecorder) Decline(context.Context, int64, string) error { return nil }

// The coordinator aborts a checkpoint as soon as one task declines it,
// while its triggers to other sources are still in flight: a source can
// hear the abort before the trigger. It must not take (and then wait, when
// finishing, for the outcome of) a checkpoint it already heard was
// aborted. Found by the 256-subtask load test: finishing sources waited the
// full final-notification timeout for an outcome already delivered.
func TestAbortBeforeTriggerIsNotAwaited(t *testing.T) {
	c := newCluster(t, 1, exchange.Options{})
	g := &jobgraphv1.JobGraph{Name: "abort-first",
		Vertices: []*jobgraphv1.Vertex{
			vertex("gen", "datagen", kSource, 1, map[string]any{"count": 1000, "rate": 2000}),
			vertex("sink", "blackhole", kSink, 1, nil)},
		Edges: []*jobgraphv1.Edge{edge("gen", "sink", pForward)}}
	control := make(chan any, 4)
	// The same order as on the wire from the JobManager: the abort of
	// checkpoint 1, then (late) its trigger.
	control <- NotifyCheckpoint{ID: 1}
	control <- TriggerCheckpoint{ID: 1, Options: &clusterv1.CheckpointOptions{Location: "job-1/chk-1", StorageBase: "file://" + t.TempDir()}}
	acks := &ackRecorder{}
	j := startJob(t, c, testRegistry(), g, jobOptions{env: func(d *clusterv1.TaskDeployment, env *TaskEnv) {
		env.Control, env.Checkpoints, env.Notifications = control, acks, NewNotifications()
	}})
	// The input lasts about 0.5 s; a task waiting for checkpoint 1's
	// outcome would stay for finalNotifyTimeout (2 minutes).
	if err := firstError(j.wait(t, finalNotifyTimeout/2)); err != nil {
		t.Fatal(err)
	}
	acks.mu.Lock()
	defer acks.mu.Unlock()
	if len(acks.acked) != 0 {
		t.Fatalf("the task acknowledged %v after hearing checkpoint 1 was aborted", acks.acked)
	}
}
