package jobmanager

import (
	"context"

	"github.com/flowrt/flow/internal/jobmanager/jobmaster"
	"github.com/flowrt/flow/internal/rpcerr"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// executor is the job masters' Executor: TaskManager calls over the
// registry's connections (each carrying the JobManager's fencing token),
// slots from the registry, job records to the persister.
type executor struct{ jm *JobManager }

var _ jobmaster.Executor = (*executor)(nil)

// errLeft: the TaskManager left service before the call.
var errLeft = rpcerr.New(rpcerr.ErrUnavailable, "the TaskManager left")

func (e *executor) client(tm string) (clusterv1.TaskExecutorServiceClient, error) {
	ref, ok := e.jm.reg.Lookup(tm)
	if !ok {
		return nil, errLeft
	}
	return ref.Client, nil
}

func (e *executor) Deploy(ctx context.Context, tm string, d *clusterv1.TaskDeployment) error {
	c, err := e.client(tm)
	if err == nil {
		_, err = c.DeployTask(ctx, &clusterv1.DeployTaskRequest{Deployment: d})
	}
	return err
}

func (e *executor) CancelTask(ctx context.Context, tm string, id *clusterv1.TaskID) error {
	c, err := e.client(tm)
	if err == nil {
		_, err = c.CancelTask(ctx, &clusterv1.CancelTaskRequest{Task: id})
	}
	return err
}

func (e *executor) TriggerCheckpoint(ctx context.Context, tm string, req *clusterv1.TriggerCheckpointRequest) error {
	c, err := e.client(tm)
	if err == nil {
		_, err = c.TriggerCheckpoint(ctx, req)
	}
	return err
}

func (e *executor) NotifyCheckpoint(ctx context.Context, tm string, req *clusterv1.NotifyCheckpointRequest) error {
	c, err := e.client(tm)
	if err == nil {
		_, err = c.NotifyCheckpoint(ctx, req)
	}
	return err
}

func (e *executor) MarkUnreachable(tm, reason string) { e.jm.markUnreachable(tm, reason) }

func (e *executor) Reachable(tm string) bool {
	_, ok := e.jm.reg.Lookup(tm)
	return ok
}

func (e *executor) Address(tm string) string { return e.jm.reg.Address(tm) }

func (e *executor) ReleaseSlots(slots []string) {
	e.jm.reg.Release(slots)
	e.jm.wake()
}

func (e *executor) WantSlots() { e.jm.wake() }

func (e *executor) SaveJob(d *clusterv1.JobDetails) { e.jm.persist.Mark(d) }
