package jobmanager

import (
	"context"
	"testing"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

func newTestJobManager(t *testing.T, opts Options) *JobManager {
	t.Helper()
	opts.DataDir = t.TempDir()
	jm, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jm.Close() })
	return jm
}

// Heartbeats take only the registry's lock: they are answered while the
// JobManager's lock is held (by job work of any length).
func TestHeartbeatDoesNotNeedTheJobManagerLock(t *testing.T) {
	jm := newTestJobManager(t, Options{HeartbeatTimeout: time.Second})
	ctx := context.Background()
	if _, err := jm.RegisterTaskManager(ctx, &clusterv1.RegisterTaskManagerRequest{TaskManagerId: "tm-a", Address: "127.0.0.1:1", Slots: 2}); err != nil {
		t.Fatal(err)
	}
	jm.mu.Lock()
	done := make(chan *clusterv1.HeartbeatResponse, 1)
	go func() {
		resp, _ := jm.Heartbeat(ctx, &clusterv1.HeartbeatRequest{TaskManagerId: "tm-a"})
		done <- resp
	}()
	select {
	case resp := <-done:
		jm.mu.Unlock()
		if resp.GetReregister() {
			t.Fatal("a registered TaskManager was asked to re-register")
		}
	case <-time.After(5 * time.Second):
		jm.mu.Unlock()
		t.Fatal("the heartbeat waited for the JobManager's lock")
	}
}

// A task the JobManager does not want (an old attempt, an unknown job) is
// canceled through the next heartbeat answer after its report.
func TestHeartbeatCancelsUnwantedTasks(t *testing.T) {
	jm := newTestJobManager(t, Options{HeartbeatTimeout: time.Second})
	ctx := context.Background()
	if _, err := jm.RegisterTaskManager(ctx, &clusterv1.RegisterTaskManagerRequest{TaskManagerId: "tm-a", Address: "127.0.0.1:1", Slots: 2}); err != nil {
		t.Fatal(err)
	}
	stray := &clusterv1.TaskID{JobId: "gone", Attempt: 3, Task: "src", Subtask: 1}
	hb := &clusterv1.HeartbeatRequest{TaskManagerId: "tm-a", RunningTasks: []*clusterv1.TaskID{stray}}
	if _, err := jm.Heartbeat(ctx, hb); err != nil {
		t.Fatal(err)
	}
	jm.reconcile()
	resp, err := jm.Heartbeat(ctx, hb)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetCancelTasks()) != 1 || resp.GetCancelTasks()[0].GetJobId() != "gone" {
		t.Fatalf("cancel tasks %v, want the stray task", resp.GetCancelTasks())
	}
}
