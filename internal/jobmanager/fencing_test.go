package jobmanager_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/internal/fencing"
	"github.com/flowrt/flow/internal/jobmanager"
	"github.com/flowrt/flow/internal/runtime"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// A TaskManager takes calls only from the JobManager it is registered
// with (its fencing token), and refuses a deployment of an attempt older
// than one it runs.
func TestTaskManagerRefusesAStaleJobManager(t *testing.T) {
	c := newCluster(t, jobmanager.Options{})
	var deployed *clusterv1.TaskDeployment
	got := make(chan *clusterv1.TaskDeployment, 1)
	c.addTaskManager("tm-a", 1, func(ctx context.Context, d *clusterv1.TaskDeployment, env runtime.TaskEnv) error {
		got <- d
		<-ctx.Done()
		return ctx.Err()
	})
	id := c.submit(chainGraph("fenced", 1, nil))
	deployed = <-got

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
	as := func(jm string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), fencing.Header, jm)
	}
	missing := &clusterv1.TaskID{JobId: "nope", Attempt: 1, Task: "src"}
	if _, err := te.CancelTask(as("jm-stale"), &clusterv1.CancelTaskRequest{Task: missing}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("cancel from a stale JobManager: %v, want FailedPrecondition", err)
	}
	if _, err := te.CancelTask(as(c.jm.ID()), &clusterv1.CancelTaskRequest{Task: missing}); status.Code(err) != codes.NotFound {
		t.Fatalf("cancel from the registered JobManager passed the fence? %v, want NotFound", err)
	}
	// An older attempt of a job that runs here is refused.
	old := proto.Clone(deployed).(*clusterv1.TaskDeployment)
	old.Id.Attempt = 0
	if _, err := te.DeployTask(as(c.jm.ID()), &clusterv1.DeployTaskRequest{Deployment: old}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("deploy of a stale attempt: %v, want FailedPrecondition", err)
	}
	if _, err := c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	c.await(id)
}
