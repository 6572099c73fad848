package jobmanager_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/jobmanager"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// A job of 256 subtasks over 4 TaskManagers with a 2s heartbeat timeout
// deploys, runs and finishes, and no TaskManager is marked lost: the
// burst of task state reports does not hold up the heartbeats.
func TestDeploy256SubtasksWithShortHeartbeats(t *testing.T) {
	c := newCluster(t, jobmanager.Options{HeartbeatTimeout: 2 * time.Second})
	for _, id := range []string{"tm-a", "tm-b", "tm-c", "tm-d"} {
		c.addTaskManager(id, 32, finishAfter(time.Second))
	}
	start := time.Now()
	id := c.submit(graph("wide", 128)) // src and sink, 128 subtasks each
	var deployed time.Duration
	waitFor(t, func() bool {
		d, err := c.client.GetJob(context.Background(), &clusterv1.GetJobRequest{JobId: id})
		if err != nil {
			return false
		}
		for _, ti := range d.GetJob().GetTasks() {
			for _, s := range ti.GetSubtasks() {
				if s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING && s.GetState() != clusterv1.TaskState_TASK_STATE_FINISHED {
					return false
				}
			}
		}
		deployed = time.Since(start)
		return true
	})
	last, seen := c.await(id)
	if got := last.GetSummary().GetStatus(); got != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		t.Fatalf("status %v, want FINISHED (seen %v)", got, seen)
	}
	resp, err := c.client.ListTaskManagers(context.Background(), &clusterv1.ListTaskManagersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range resp.GetTaskManagers() {
		if tm.GetState() != clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE {
			t.Fatalf("TaskManager %s is %v after the job", tm.GetId(), tm.GetState())
		}
	}
	t.Logf("256 subtasks on 4 TaskManagers: all running %s after submission", deployed.Round(time.Millisecond))
}
