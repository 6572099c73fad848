package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/internal/jobmanager/jobmaster"
	"github.com/flowrt/flow/internal/jobmanager/lifecycle"
	"github.com/flowrt/flow/internal/rpcerr"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/jobspec"
	"github.com/flowrt/flow/pkg/keygroup"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// This file holds the JobManagerService (flowctl's API). The handlers
// route requests to job masters and read their published views; none
// holds a lock across I/O.

func (jm *JobManager) SubmitJob(ctx context.Context, req *clusterv1.SubmitJobRequest) (*clusterv1.SubmitJobResponse, error) {
	g := req.GetGraph()
	if g == nil {
		return nil, rpcerr.New(rpcerr.ErrInvalidArgument, "submit: the request carries no job graph")
	}
	plan, err := jm.validate(g)
	if err != nil {
		return nil, rpcerr.New(rpcerr.ErrInvalidArgument, err.Error())
	}
	ckCfg, err := jobspec.CheckpointsOf(g)
	if err != nil {
		return nil, rpcerr.New(rpcerr.ErrInvalidArgument, err.Error())
	}
	id := randomID(16)
	ck, err := jm.openCheckpoints(ctx, id, g, ckCfg, req.GetRestorePath(), req.GetAllowNonRestoredState())
	if err != nil {
		return nil, rpcerr.New(rpcerr.ErrFailedPrecondition, err.Error())
	}
	now := time.Now()
	d := jobmaster.NewDetails(id, g, plan, now)
	d.RestorePath, d.AllowNonRestoredState = req.GetRestorePath(), req.GetAllowNonRestoredState()
	// Stored before it is visible: a JobManager that restarts knows every
	// job it ever acknowledged.
	if err := jm.store.Save(d); err != nil {
		ck.Close()
		return nil, rpcerr.Errorf(rpcerr.ErrInternal, "store job: %v", err)
	}
	jm.mu.Lock()
	if jm.closed {
		jm.mu.Unlock()
		ck.Close()
		return nil, rpcerr.New(rpcerr.ErrUnavailable, "the JobManager is shutting down")
	}
	m := jm.newMaster(d, plan, ck, false, now)
	jm.jobs[id] = m
	jm.order = append(jm.order, id)
	jm.mu.Unlock()
	jm.submittedTotal.Inc()
	jm.log.Info("job submitted", "job", id, "name", g.GetName(), "slots", jobmaster.MaxParallelism(plan))
	jm.wake()
	return &clusterv1.SubmitJobResponse{JobId: id}, nil
}

// validate checks what the JobManager can check of a graph: its shape, its
// parallelism against max parallelism, and (with a registry) operator types.
func (jm *JobManager) validate(g *jobgraphv1.JobGraph) (*jobgraph.Plan, error) {
	plan, err := jobgraph.BuildPlan(g)
	if err != nil {
		return nil, err
	}
	maxP := int(g.GetMaxParallelism())
	if maxP == 0 {
		maxP = keygroup.DefaultMaxParallelism
	}
	var errs []error
	for _, v := range g.GetVertices() {
		if err := keygroup.Validate(jobgraph.VertexParallelism(g, v), maxP); err != nil {
			errs = append(errs, fmt.Errorf("operator %q: %w", v.GetId(), err))
		}
		if jm.opts.Registry != nil {
			// A source and a sink may share a name (file): take the kind the vertex has.
			kind := api.KindOperator
			switch v.GetKind() {
			case jobgraphv1.VertexKind_VERTEX_KIND_SOURCE:
				kind = api.KindSource
			case jobgraphv1.VertexKind_VERTEX_KIND_SINK:
				kind = api.KindSink
			}
			typ, err := jm.opts.Registry.LookupKind(v.GetType(), kind)
			if err == nil {
				// Build it as a TaskManager will: a config accepted here
				// deploys (graphs from the Go SDK skip jobspec's check).
				_, err = typ.Instantiate(v.GetConfig())
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("operator %q: %w", v.GetId(), err))
			}
		}
	}
	if jm.opts.Registry != nil {
		// The types' own checks of the job around them (api.OperatorType.CheckJob).
		if err := jobspec.CheckJob(g, jm.opts.Registry); err != nil {
			errs = append(errs, err)
		}
	}
	return plan, errors.Join(errs...)
}

func (jm *JobManager) ListJobs(ctx context.Context, _ *clusterv1.ListJobsRequest) (*clusterv1.ListJobsResponse, error) {
	resp := &clusterv1.ListJobsResponse{}
	for _, m := range jm.masters() {
		resp.Jobs = append(resp.Jobs, proto.Clone(m.View().Details.GetSummary()).(*clusterv1.JobSummary))
	}
	return resp, nil
}

func (jm *JobManager) lookup(id string) (*jobmaster.Master, error) {
	m := jm.master(id)
	if m == nil {
		return nil, rpcerr.Errorf(rpcerr.ErrNotFound, "job %q not found", id)
	}
	return m, nil
}

func (jm *JobManager) GetJob(ctx context.Context, req *clusterv1.GetJobRequest) (*clusterv1.GetJobResponse, error) {
	m, err := jm.lookup(req.GetJobId())
	if err != nil {
		return nil, err
	}
	d := proto.Clone(m.View().Details).(*clusterv1.JobDetails)
	// Fill in addresses of the TaskManagers that run subtasks.
	for _, t := range d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			s.TaskManagerAddress = jm.reg.Address(s.GetTaskManagerId())
		}
	}
	return &clusterv1.GetJobResponse{Job: d}, nil
}

// GetVertexStats answers from the heartbeat samples (taskstats) and the
// job master's published view: it never waits for the job.
func (jm *JobManager) GetVertexStats(ctx context.Context, req *clusterv1.GetVertexStatsRequest) (*clusterv1.GetVertexStatsResponse, error) {
	m, err := jm.lookup(req.GetJobId())
	if err != nil {
		return nil, err
	}
	d := m.View().Details
	return jm.stats.Vertices(req.GetJobId(), d.GetSummary().GetAttempt(), d.GetTasks()), nil
}

func (jm *JobManager) CancelJob(ctx context.Context, req *clusterv1.CancelJobRequest) (*clusterv1.CancelJobResponse, error) {
	m, err := jm.lookup(req.GetJobId())
	if err != nil {
		return nil, err
	}
	switch err := m.Cancel(ctx, time.Now()); {
	case errors.Is(err, lifecycle.ErrTerminal):
		return nil, rpcerr.Errorf(rpcerr.ErrFailedPrecondition, "job %q is already %s", req.GetJobId(), shortStatus(m.View().Status()))
	case errors.Is(err, jobmaster.ErrClosed):
		return nil, rpcerr.New(rpcerr.ErrUnavailable, "the JobManager is shutting down")
	case err != nil:
		return nil, err
	}
	return &clusterv1.CancelJobResponse{}, nil
}

func (jm *JobManager) WatchJob(req *clusterv1.WatchJobRequest, stream clusterv1.JobManagerService_WatchJobServer) error {
	m, err := jm.lookup(req.GetJobId())
	if err != nil {
		return err
	}
	var last *clusterv1.JobStatusEvent
	for {
		v := m.View()
		ev := &clusterv1.JobStatusEvent{Summary: proto.Clone(v.Details.GetSummary()).(*clusterv1.JobSummary), Message: v.Note}
		if last == nil || last.GetSummary().GetStatus() != ev.GetSummary().GetStatus() ||
			last.GetMessage() != ev.GetMessage() || last.GetSummary().GetAttempt() != ev.GetSummary().GetAttempt() {
			if err := stream.Send(ev); err != nil {
				return err
			}
			last = ev
		}
		if lifecycle.IsTerminal(ev.GetSummary().GetStatus()) {
			return nil
		}
		select {
		case <-v.Changed:
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-jm.done:
			return rpcerr.New(rpcerr.ErrUnavailable, "the JobManager is shutting down")
		}
	}
}

func (jm *JobManager) ListTaskManagers(ctx context.Context, _ *clusterv1.ListTaskManagersRequest) (*clusterv1.ListTaskManagersResponse, error) {
	return &clusterv1.ListTaskManagersResponse{TaskManagers: jm.reg.List()}, nil
}

func (jm *JobManager) ListCheckpoints(ctx context.Context, req *clusterv1.ListCheckpointsRequest) (*clusterv1.ListCheckpointsResponse, error) {
	m, err := jm.lookup(req.GetJobId())
	if err != nil {
		return nil, err
	}
	v := m.View()
	resp := &clusterv1.ListCheckpointsResponse{LatestCompletedPath: v.LatestPath}
	for _, info := range v.Checkpoints {
		resp.Checkpoints = append(resp.Checkpoints, proto.Clone(info).(*clusterv1.CheckpointInfo))
	}
	return resp, nil
}

// TriggerSavepoint takes a savepoint of a running job and streams its
// progress.
func (jm *JobManager) TriggerSavepoint(req *clusterv1.TriggerSavepointRequest, stream clusterv1.JobManagerService_TriggerSavepointServer) error {
	ctx := stream.Context()
	jobID := req.GetJobId()
	m, err := jm.lookup(jobID)
	if err != nil {
		return err
	}
	if v := m.View(); !v.CanSavepoint {
		return rpcerr.Errorf(rpcerr.ErrFailedPrecondition, "savepoint: job %s is %s; savepoints need a RUNNING job", jobID, shortStatus(v.Status()))
	}
	target := req.GetTargetDir()
	if target == "" {
		target = jm.opts.SavepointDir
	}
	if target == "" {
		return rpcerr.New(rpcerr.ErrInvalidArgument, "savepoint: no target directory: pass --dir URL, or start the JobManager with --savepoint-dir")
	}
	stor, err := storage.Open(ctx, target, storage.WithLogger(jm.log))
	if err != nil {
		return rpcerr.Errorf(rpcerr.ErrInvalidArgument, "savepoint target %s: %v", target, err)
	}
	sp, err := m.TriggerSavepoint(ctx, time.Now(), stor, req.GetStop(), req.GetDrain())
	switch {
	case errors.Is(err, jobmaster.ErrNoSavepoint):
		stor.Close()
		return rpcerr.New(rpcerr.ErrFailedPrecondition, "savepoint: "+trimPrefix(err.Error(), jobmaster.ErrNoSavepoint.Error()+": "))
	case errors.Is(err, jobmaster.ErrClosed):
		stor.Close()
		return rpcerr.New(rpcerr.ErrUnavailable, "the JobManager is shutting down")
	case err != nil:
		stor.Close()
		return err
	}
	var last *clusterv1.SavepointProgress
	for {
		pr := sp.Progress()
		if pr.Err != nil {
			return rpcerr.New(rpcerr.ErrAborted, pr.Err.Error())
		}
		p := &clusterv1.SavepointProgress{CheckpointId: int64(pr.ID), Acknowledged: int32(pr.Acknowledged), Total: int32(pr.Total), Done: pr.Done}
		switch {
		case p.Done:
			p.Path, p.Message = pr.Path, "savepoint complete"
			if pr.Stop {
				p.Message = "savepoint complete; stopping the job"
			}
		case last == nil:
			p.Message = "savepoint triggered"
		default:
			p.Message = "waiting for acknowledgements"
		}
		if last == nil || p.Acknowledged != last.Acknowledged || p.Done {
			if err := stream.Send(p); err != nil {
				return err
			}
			last = p
		}
		if p.Done {
			return nil
		}
		select {
		case <-pr.Changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-jm.done:
			return rpcerr.New(rpcerr.ErrUnavailable, "the JobManager is shutting down")
		}
	}
}
