package jobmaster

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowrt/flow/internal/jobmanager/lifecycle"
	"github.com/flowrt/flow/pkg/jobgraph"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// deploy sends every subtask of attempt to its slot's TaskManager, each
// with the state it restores. A deployment that fails marks its subtask
// FAILED; one whose TaskManager does not answer also takes that
// TaskManager out of service and has the attempt scheduled again on the
// others without using a restart attempt.
func (m *Master) deploy(attempt int32, slots []string) {
	d := m.lc.Details()
	addrOf := func(_ string, subtask int) string { return m.exec.Address(slots[subtask]) }
	deps := jobgraph.BuildDeployments(m.id, attempt, d.GetGraph(), m.plan, addrOf)
	if m.ck.restore != nil {
		m.ck.stats.Restored = m.now
	}
	for _, dep := range deps {
		dep.Restore = RestoreFor(m.ck.restore, dep)
		tm := slots[dep.GetId().GetSubtask()]
		m.goIO(func(ctx context.Context) {
			ctx, cancel := context.WithTimeout(ctx, m.cfg.RPCTimeout)
			err := m.exec.Deploy(ctx, tm, dep)
			cancel()
			if err == nil || m.ctx.Err() != nil {
				return
			}
			id := dep.GetId()
			m.log.Warn("deploy task", "job", m.id, "task", id.GetTask(), "subtask", id.GetSubtask(), "taskmanager", tm, "err", err)
			msg := fmt.Sprintf("deploy to TaskManager %s failed: %v", tm, status.Convert(err).Message())
			if status.Code(err) == codes.Unavailable {
				// The TaskManager does not answer: suspect it now rather
				// than after the heartbeat timeout. A live one re-registers
				// on its next heartbeat.
				m.post(deployUnreachableEvent{at: time.Now(), attempt: attempt})
				m.exec.MarkUnreachable(tm, msg)
			}
			m.post(taskStateEvent{at: time.Now(), req: &clusterv1.UpdateTaskStateRequest{
				TaskManagerId: tm, Task: id, State: clusterv1.TaskState_TASK_STATE_FAILED, Failure: msg}, reply: make(chan struct{})})
		})
	}
}

// cancelTasks asks TaskManagers to cancel subtasks of attempt. A subtask
// whose TaskManager cannot be reached is canceled at once: its
// TaskManager is gone, or learns from its next heartbeat.
func (m *Master) cancelTasks(attempt int32, subs []lifecycle.Subtask) {
	for _, s := range subs {
		id := &clusterv1.TaskID{JobId: m.id, Attempt: attempt, Task: s.Task, Subtask: s.Index}
		canceled := &clusterv1.UpdateTaskStateRequest{TaskManagerId: s.TaskManager, Task: id, State: clusterv1.TaskState_TASK_STATE_CANCELED}
		if !m.exec.Reachable(s.TaskManager) {
			m.taskState(canceled)
			continue
		}
		tm := s.TaskManager
		m.goIO(func(ctx context.Context) {
			ctx, cancel := context.WithTimeout(ctx, m.cfg.RPCTimeout)
			err := m.exec.CancelTask(ctx, tm, id)
			cancel()
			if err == nil || m.ctx.Err() != nil {
				return
			}
			m.log.Warn("cancel task", "job", m.id, "task", id.GetTask(), "subtask", id.GetSubtask(), "taskmanager", tm, "err", err)
			canceled.Failure = "cancel failed: " + err.Error()
			m.post(taskStateEvent{at: time.Now(), req: canceled, reply: make(chan struct{})})
		})
	}
}
