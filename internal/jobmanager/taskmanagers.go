package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/internal/fencing"
	"github.com/flowrt/flow/internal/jobmanager/jobmaster"
	"github.com/flowrt/flow/internal/rpcerr"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// This file holds the ResourceManagerService (what TaskManagers call):
// registration and heartbeats go to the registry (heartbeat.go); task
// states and checkpoint acknowledgements are routed to the job's master.

func (jm *JobManager) RegisterTaskManager(ctx context.Context, req *clusterv1.RegisterTaskManagerRequest) (*clusterv1.RegisterTaskManagerResponse, error) {
	if req.GetTaskManagerId() == "" || req.GetAddress() == "" || req.GetSlots() < 0 {
		return nil, rpcerr.New(rpcerr.ErrInvalidArgument, "register: task_manager_id, address and a non-negative slot count are required")
	}
	conn, err := grpc.NewClient(req.GetAddress(), append(slices.Clip(jm.opts.DialOptions), grpc.WithChainUnaryInterceptor(fencing.Interceptor(fencing.Token{ID: jm.id, Epoch: jm.opts.LeaderEpoch})))...)
	if err != nil {
		return nil, rpcerr.Errorf(rpcerr.ErrInvalidArgument, "register: bad TaskManager address %q: %v", req.GetAddress(), err)
	}
	interval, ttl, ok := jm.reg.Register(req, conn, time.Now())
	if !ok {
		conn.Close()
		return nil, rpcerr.New(rpcerr.ErrUnavailable, "the JobManager is shutting down")
	}
	jm.log.Info("taskmanager registered", "id", req.GetTaskManagerId(), "address", req.GetAddress(), "slots", req.GetSlots(), "heartbeat_interval", interval)
	jm.wake()
	return &clusterv1.RegisterTaskManagerResponse{
		JobManagerId:        jm.id,
		HeartbeatIntervalMs: interval.Milliseconds(),
		HeartbeatTimeoutMs:  ttl.Milliseconds(),
		LeaderEpoch:         jm.opts.LeaderEpoch,
	}, nil
}

// Heartbeat resets the TaskManager's TTL. It takes only the registry's
// lock: the tasks it asks to cancel were found unwanted (by reconcile) in
// the TaskManager's previous report.
func (jm *JobManager) Heartbeat(ctx context.Context, req *clusterv1.HeartbeatRequest) (*clusterv1.HeartbeatResponse, error) {
	cancel, rereg := jm.reg.Heartbeat(req.GetTaskManagerId(), req.GetRunningTasks(), time.Now())
	if rereg {
		return &clusterv1.HeartbeatResponse{Reregister: true}, nil
	}
	jm.stats.Add(req.GetTaskManagerId(), req.GetTaskSamples(), time.Now())
	return &clusterv1.HeartbeatResponse{CancelTasks: cancel}, nil
}

// markUnreachable takes a TaskManager that failed an RPC with Unavailable
// out of service, as a missed heartbeat would.
func (jm *JobManager) markUnreachable(id, reason string) {
	addr := jm.reg.Address(id)
	msg := fmt.Sprintf("TaskManager %s (%s) unreachable: %s", id, addr, reason)
	if jm.reg.Retire(id, clusterv1.TaskManagerState_TASK_MANAGER_STATE_LOST, msg) {
		jm.log.Warn("taskmanager unreachable; marked lost", "id", id, "address", addr, "reason", reason)
	}
}

func (jm *JobManager) DeregisterTaskManager(ctx context.Context, req *clusterv1.DeregisterTaskManagerRequest) (*clusterv1.DeregisterTaskManagerResponse, error) {
	id := req.GetTaskManagerId()
	if jm.reg.Retire(id, clusterv1.TaskManagerState_TASK_MANAGER_STATE_DEREGISTERED, fmt.Sprintf("TaskManager %s shut down", id)) {
		jm.log.Info("taskmanager deregistered", "id", id)
	}
	return &clusterv1.DeregisterTaskManagerResponse{}, nil
}

// routed maps the outcome of an event routed to a job master: a closed
// master means the JobManager is shutting down.
func routed(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jobmaster.ErrClosed):
		return rpcerr.New(rpcerr.ErrUnavailable, "the JobManager is shutting down")
	default:
		return err
	}
}

func (jm *JobManager) UpdateTaskState(ctx context.Context, req *clusterv1.UpdateTaskStateRequest) (*clusterv1.UpdateTaskStateResponse, error) {
	if jm.isClosed() {
		return nil, rpcerr.New(rpcerr.ErrUnavailable, "the JobManager is shutting down")
	}
	m := jm.master(req.GetTask().GetJobId())
	if m == nil {
		return &clusterv1.UpdateTaskStateResponse{}, nil // stale: an unknown job
	}
	if err := m.UpdateTaskState(ctx, time.Now(), req); err != nil {
		return nil, routed(err)
	}
	return &clusterv1.UpdateTaskStateResponse{}, nil
}

func (jm *JobManager) AcknowledgeCheckpoint(ctx context.Context, req *clusterv1.AcknowledgeCheckpointRequest) (*clusterv1.AcknowledgeCheckpointResponse, error) {
	handle, err := proto.Marshal(req)
	if err != nil {
		return nil, rpcerr.Errorf(rpcerr.ErrInvalidArgument, "acknowledgement: %v", err)
	}
	if m := jm.master(req.GetTask().GetJobId()); m != nil {
		if err := m.Acknowledge(ctx, time.Now(), req, handle); err != nil {
			return nil, routed(err)
		}
	}
	return &clusterv1.AcknowledgeCheckpointResponse{}, nil
}

func (jm *JobManager) DeclineCheckpoint(ctx context.Context, req *clusterv1.DeclineCheckpointRequest) (*clusterv1.DeclineCheckpointResponse, error) {
	if m := jm.master(req.GetTask().GetJobId()); m != nil {
		if err := m.Decline(ctx, time.Now(), req); err != nil {
			return nil, routed(err)
		}
	}
	return &clusterv1.DeclineCheckpointResponse{}, nil
}
