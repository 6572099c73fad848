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
// with (its fencing token: id and leader epoch) or from a newer leader,
// and refuses a deployment of an attempt older than one it runs.
func TestTaskManagerRefusesAStaleJobManager(t *testing.T) {
	c := newCluster(t, jobmanager.Options{LeaderEpoch: 5})
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
	asEpoch := func(jm, epoch string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), fencing.Header, jm, fencing.EpochHeader, epoch)
	}
	as := func(jm string) context.Context { return asEpoch(jm, "5") }
	missing := &clusterv1.TaskID{JobId: "nope", Attempt: 1, Task: "src"}
	if _, err := te.CancelTask(as("jm-stale"), &clusterv1.CancelTaskRequest{Task: missing}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("cancel from a stale JobManager: %v, want FailedPrecondition", err)
	}
	if _, err := te.CancelTask(as(c.jm.ID()), &clusterv1.CancelTaskRequest{Task: missing}); status.Code(err) != codes.NotFound {
		t.Fatalf("cancel from the registered JobManager passed the fence? %v, want NotFound", err)
	}
	if _, err := te.CancelTask(asEpoch(c.jm.ID(), "4"), &clusterv1.CancelTaskRequest{Task: missing}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("cancel of an older leader epoch: %v, want FailedPrecondition", err)
	}
	// A newer leader passes before the TaskManager registered with it;
	// from then on the old one is refused.
	if _, err := te.CancelTask(asEpoch("jm-new", "6"), &clusterv1.CancelTaskRequest{Task: missing}); status.Code(err) != codes.NotFound {
		t.Fatalf("cancel from a newer leader: %v, want NotFound (past the fence)", err)
	}
	if _, err := te.CancelTask(as(c.jm.ID()), &clusterv1.CancelTaskRequest{Task: missing}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("cancel from the deposed leader: %v, want FailedPrecondition", err)
	}
	// The job's cancel below comes from the deposed leader too: let the
	// TaskManager follow it again as it would after re-registering.
	if _, err := te.CancelTask(asEpoch(c.jm.ID(), "7"), &clusterv1.CancelTaskRequest{Task: missing}); status.Code(err) != codes.NotFound {
		t.Fatal(err)
	}
	// An older attempt of a job that runs here is refused.
	old := proto.Clone(deployed).(*clusterv1.TaskDeployment)
	old.Id.Attempt = 0
	if _, err := te.DeployTask(asEpoch(c.jm.ID(), "7"), &clusterv1.DeployTaskRequest{Deployment: old}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("deploy of a stale attempt: %v, want FailedPrecondition", err)
	}
	if _, err := c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	c.await(id)
}
