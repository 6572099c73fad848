package runtime

import (
	"context"

	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// Control messages reach a running subtask through TaskEnv.Control and are
// handled by the subtask's own goroutine between batches (its mailbox).
// The TaskManager sends them; it never blocks on a full mailbox (it declines
// the checkpoint instead).

// TriggerCheckpoint asks a source subtask to take checkpoint ID: snapshot
// its state and position, then emit barrier ID downstream in band.
type TriggerCheckpoint struct {
	ID          int64
	TimestampMs int64
	Options     *clusterv1.CheckpointOptions
}

// NotifyCheckpoint says checkpoint ID completed (commit side effects, e.g.
// the file sink's pending files) or was aborted (discard what it produced).
type NotifyCheckpoint struct {
	ID        int64
	Completed bool
}

// CheckpointResponder reports a subtask's part of a checkpoint to the
// JobManager. The TaskManager implements it over gRPC. Calls may come from a
// background upload goroutine.
type CheckpointResponder interface {
	// Acknowledge reports that the snapshot of every operator of the chain
	// (by operator uid) is durable.
	Acknowledge(ctx context.Context, id int64, operators map[string]*checkpointv1.SubtaskState, timing *clusterv1.TaskCheckpointTiming) error
	// Decline reports that the subtask cannot take checkpoint id.
	Decline(ctx context.Context, id int64, reason string) error
}
