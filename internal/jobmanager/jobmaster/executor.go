package jobmaster

import (
	"context"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// Executor carries out what a job master decided and cannot do itself:
// calls to TaskManagers, slot bookkeeping and job records. The job master
// calls the blocking methods (those taking a context) from goroutines of
// its own, never from its loop, and feeds their results back to the loop
// as events; the others must return at once (no I/O).
//
// The JobManager's executor calls TaskManagers over gRPC with a fencing
// token; tests implement it over in-process tasks.
type Executor interface {
	// Deploy starts a subtask on TaskManager tm. An error whose gRPC code is
	// Unavailable means tm does not answer (see MarkUnreachable).
	Deploy(ctx context.Context, tm string, d *clusterv1.TaskDeployment) error
	// CancelTask asks tm to cancel a subtask.
	CancelTask(ctx context.Context, tm string, id *clusterv1.TaskID) error
	// TriggerCheckpoint asks tm to inject a barrier at a source subtask. A
	// NotFound error means the subtask does not run (yet).
	TriggerCheckpoint(ctx context.Context, tm string, req *clusterv1.TriggerCheckpointRequest) error
	// NotifyCheckpoint tells tm that a checkpoint completed or was aborted.
	NotifyCheckpoint(ctx context.Context, tm string, req *clusterv1.NotifyCheckpointRequest) error
	// MarkUnreachable takes tm out of service, as a missed heartbeat would
	// (its subtasks fail through EventTaskManagerLost). Called from the job
	// master's goroutines, never its loop.
	MarkUnreachable(tm, reason string)

	// Reachable reports whether tm is registered and connected.
	Reachable(tm string) bool
	// Address is tm's address, also after it left ("" if unknown).
	Address(tm string) string
	// ReleaseSlots gives slots back to the scheduler.
	ReleaseSlots(slots []string)
	// WantSlots tells the scheduler that the job waits for slots.
	WantSlots()
	// SaveJob stores the job's record; d is immutable and may be kept.
	// It must not block on the store: records are written in the
	// background, coalesced per job.
	SaveJob(d *clusterv1.JobDetails)
}
