package jobmanager_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/jobmanager"
	"github.com/flowrt/flow/internal/runtime"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// A completion sent while the subtask's control mailbox is full of
// triggers still reaches it, and a notification sent with await_processed
// is answered only after the subtask acted on it.
func TestNotificationsAreNotDroppedByAFullMailbox(t *testing.T) {
	c := newCluster(t, jobmanager.Options{})
	started, release := make(chan *clusterv1.TaskID, 1), make(chan struct{})
	var sawCompletion, processedAt, answeredAt atomic.Int64
	c.addTaskManager("tm-a", 1, func(ctx context.Context, d *clusterv1.TaskDeployment, env runtime.TaskEnv) error {
		started <- d.GetId()
		select { // busy: reads no mailbox until released
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		seen := func(m runtime.NotifyCheckpoint) {
			if m.Completed {
				sawCompletion.Store(m.ID)
				time.Sleep(50 * time.Millisecond) // a slow commit
				processedAt.Store(time.Now().UnixNano())
				env.Notifications.MarkProcessed(m.ID)
			}
		}
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case m := <-env.Control:
				if n, ok := m.(runtime.NotifyCheckpoint); ok {
					seen(n) // where the TaskManager used to put notifications
				}
			case <-env.Notifications.Ready():
				for _, n := range env.Notifications.Take(nil) {
					seen(n)
				}
			}
		}
	})
	id := c.submit(chainGraph("notify", 1, nil))
	task := <-started

	tms, err := c.client.ListTaskManagers(context.Background(), &clusterv1.ListTaskManagersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(tms.GetTaskManagers()[0].GetAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	te := clusterv1.NewTaskExecutorServiceClient(conn)
	ctx := context.Background()
	full := false
	for i := int64(1); i <= 40 && !full; i++ {
		_, err := te.TriggerCheckpoint(ctx, &clusterv1.TriggerCheckpointRequest{Task: task, CheckpointId: i, Options: &clusterv1.CheckpointOptions{}})
		full = err != nil
	}
	if !full {
		t.Fatal("the control mailbox never filled up")
	}
	// Sent while the mailbox is full: the TaskManager used to drop it.
	if _, err := te.NotifyCheckpoint(ctx, &clusterv1.NotifyCheckpointRequest{JobId: task.GetJobId(), Attempt: task.GetAttempt(), CheckpointId: 7, Completed: true}); err != nil {
		t.Fatalf("notify: %v", err)
	}
	close(release)
	waitFor(t, func() bool { return sawCompletion.Load() == 7 })

	// await_processed answers only once the subtask acted on it.
	if _, err := te.NotifyCheckpoint(ctx, &clusterv1.NotifyCheckpointRequest{JobId: task.GetJobId(), Attempt: task.GetAttempt(), CheckpointId: 9, Completed: true, AwaitProcessed: true}); err != nil {
		t.Fatalf("notify: %v", err)
	}
	answeredAt.Store(time.Now().UnixNano())
	if got := sawCompletion.Load(); got != 9 {
		t.Fatalf("await_processed answered before the subtask saw completion 9 (saw %d)", got)
	}
	if answeredAt.Load() < processedAt.Load() {
		t.Fatal("await_processed answered before the subtask processed the notification")
	}
	if _, err := c.client.CancelJob(ctx, &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	c.await(id)
}
