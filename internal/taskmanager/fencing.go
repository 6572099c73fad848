package taskmanager

import (
	"context"

	"github.com/flowrt/flow/internal/fencing"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// fenced refuses a call from a JobManager other than the one this
// TaskManager is registered with (internal/fencing).
func (tm *TaskManager) fenced(ctx context.Context) error {
	tm.mu.Lock()
	want := tm.jobManagerID
	tm.mu.Unlock()
	return fencing.Check(ctx, want)
}

// staleAttemptLocked reports whether a deployment is of an older attempt
// of its job than one this TaskManager already runs (a late deployment of
// an attempt the JobManager has moved past).
func (tm *TaskManager) staleAttemptLocked(id *clusterv1.TaskID) (int32, bool) {
	for k := range tm.tasks {
		if k.job == id.GetJobId() && k.attempt > id.GetAttempt() {
			return k.attempt, true
		}
	}
	return 0, false
}
