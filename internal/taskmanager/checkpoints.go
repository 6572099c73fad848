package taskmanager

import (
	"context"

	"github.com/flowrt/flow/internal/rpcerr"
	"github.com/flowrt/flow/internal/runtime"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// controlBuffer is the capacity of each task's control mailbox. A trigger
// that finds it full is declined rather than blocking the RPC.
const controlBuffer = 16

// TriggerCheckpoint hands a checkpoint trigger to a source subtask's
// mailbox.
func (tm *TaskManager) TriggerCheckpoint(ctx context.Context, req *clusterv1.TriggerCheckpointRequest) (*clusterv1.TriggerCheckpointResponse, error) {
	if err := tm.fenced(ctx); err != nil {
		return nil, err
	}
	tm.mu.Lock()
	t := tm.tasks[keyOf(req.GetTask())]
	tm.mu.Unlock()
	if t == nil {
		return nil, rpcerr.Errorf(rpcerr.ErrNotFound, "task %s/%d of job %s is not running on %s",
			req.GetTask().GetTask(), req.GetTask().GetSubtask(), req.GetTask().GetJobId(), tm.opts.ID)
	}
	msg := runtime.TriggerCheckpoint{ID: req.GetCheckpointId(), TimestampMs: req.GetTimestampMs(), Options: req.GetOptions()}
	select {
	case t.control <- msg:
		return &clusterv1.TriggerCheckpointResponse{}, nil
	default:
		return nil, rpcerr.Errorf(rpcerr.ErrResourceExhausted, "task %s/%d: control mailbox full", req.GetTask().GetTask(), req.GetTask().GetSubtask())
	}
}

// NotifyCheckpoint tells every subtask of the job attempt here that a
// checkpoint completed or was aborted. Notifications never drop: each
// subtask's runtime.Notifications keeps the latest completion until the
// subtask takes it. With await_processed the answer waits until each of
// those subtasks acted on it (or ended), bounded by the call's deadline.
func (tm *TaskManager) NotifyCheckpoint(ctx context.Context, req *clusterv1.NotifyCheckpointRequest) (*clusterv1.NotifyCheckpointResponse, error) {
	if err := tm.fenced(ctx); err != nil {
		return nil, err
	}
	var tasks []*task
	tm.mu.Lock()
	for k, t := range tm.tasks {
		if k.job == req.GetJobId() && k.attempt == req.GetAttempt() {
			tasks = append(tasks, t)
		}
	}
	tm.mu.Unlock()
	for _, t := range tasks {
		t.notes.Notify(req.GetCheckpointId(), req.GetCompleted())
	}
	if !req.GetAwaitProcessed() || !req.GetCompleted() {
		return &clusterv1.NotifyCheckpointResponse{}, nil
	}
	for _, t := range tasks {
		t.notes.Await(req.GetCheckpointId(), ctx.Done())
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return &clusterv1.NotifyCheckpointResponse{}, nil
}

// responder reports one subtask's checkpoint results to the JobManager.
type responder struct {
	tm *TaskManager
	id *clusterv1.TaskID
}

var _ runtime.CheckpointResponder = (*responder)(nil)

func (r *responder) Acknowledge(ctx context.Context, id int64, operators map[string]*checkpointv1.SubtaskState, timing *clusterv1.TaskCheckpointTiming) error {
	_, err := r.tm.endpoint().rm.AcknowledgeCheckpoint(ctx, &clusterv1.AcknowledgeCheckpointRequest{
		TaskManagerId: r.tm.opts.ID, Task: r.id, CheckpointId: id, Operators: operators, Timing: timing,
	})
	return err
}

func (r *responder) Decline(ctx context.Context, id int64, reason string) error {
	_, err := r.tm.endpoint().rm.DeclineCheckpoint(ctx, &clusterv1.DeclineCheckpointRequest{
		TaskManagerId: r.tm.opts.ID, Task: r.id, CheckpointId: id, Reason: reason,
	})
	return err
}
