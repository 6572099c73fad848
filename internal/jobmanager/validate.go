package jobmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowrt/flow/internal/opinfo"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/jobspec"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// The JobManager's registry is the cluster's authority on operator types:
// flowctl sends specs here to be parsed, lists the types from here, and
// checks savepoints here, so a stock flowctl works with a cluster built
// with user-defined types. These handlers read only opts.Registry (set at
// New, never changed) and take no JobManager lock.

// typeRegistry is the registry specs are checked against: opts.Registry,
// else api.Default (what the stock binaries register the built-ins in).
func (jm *JobManager) typeRegistry() *api.Registry {
	if jm.opts.Registry != nil {
		return jm.opts.Registry
	}
	return api.Default
}

// ValidateSpec parses a YAML job spec against the JobManager's operator
// types. Problems of the spec are the response's problems (not an error
// status); the status is InvalidArgument only for a request without a spec.
func (jm *JobManager) ValidateSpec(ctx context.Context, req *clusterv1.ValidateSpecRequest) (*clusterv1.ValidateSpecResponse, error) {
	graph, problems, err := jm.parseSpec(req.GetSpec(), req.GetFilename(), req.GetSets())
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return &clusterv1.ValidateSpecResponse{Problems: problems}, nil
	}
	plan, err := jobgraph.BuildPlan(graph) // jobspec ran it already; this gives the task count
	if err != nil {
		return &clusterv1.ValidateSpecResponse{Problems: []string{req.GetFilename() + ": " + err.Error()}}, nil
	}
	return &clusterv1.ValidateSpecResponse{Graph: graph, Tasks: int32(len(plan.Tasks)), Warnings: jm.taskManagerGaps(ctx, graph)}, nil
}

// askTaskManagerTimeout bounds each TaskManager's ListOperatorTypes.
const askTaskManagerTimeout = 3 * time.Second

// taskManagerGaps asks every active TaskManager for its operator types (in
// parallel, each within askTaskManagerTimeout) and returns a line for each
// type of graph one of them lacks. TaskManagers that do not answer, or
// predate the call, are left out: this is advice, the deployment decides.
func (jm *JobManager) taskManagerGaps(ctx context.Context, graph *jobgraphv1.JobGraph) []string {
	tms, err := jm.ListTaskManagers(ctx, &clusterv1.ListTaskManagersRequest{})
	if err != nil {
		return nil
	}
	need := map[string]bool{}
	for _, v := range graph.GetVertices() {
		need[v.GetType()] = true
	}
	var active []*clusterv1.TaskManagerInfo
	for _, tm := range tms.GetTaskManagers() {
		if tm.GetState() == clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE && tm.GetAddress() != "" {
			active = append(active, tm)
		}
	}
	gaps := make([][]string, len(active))
	var wg sync.WaitGroup
	for i, tm := range active {
		wg.Add(1)
		go func() {
			defer wg.Done()
			have, ok := jm.taskManagerTypes(ctx, tm.GetAddress())
			if !ok {
				return
			}
			for _, name := range sortedKeys(need) {
				if !have[name] {
					gaps[i] = append(gaps[i], fmt.Sprintf("TaskManager %q lacks operator type %q: a task of it placed there fails: build every TaskManager with the JobManager's registry",
						tm.GetId(), name))
				}
			}
		}()
	}
	wg.Wait()
	var out []string
	for _, g := range gaps {
		out = append(out, g...)
	}
	return out
}

// taskManagerTypes is the set of type names the TaskManager at addr has.
func (jm *JobManager) taskManagerTypes(ctx context.Context, addr string) (map[string]bool, bool) {
	conn, err := grpc.NewClient(addr, jm.opts.DialOptions...)
	if err != nil {
		return nil, false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, askTaskManagerTimeout)
	defer cancel()
	resp, err := clusterv1.NewTaskExecutorServiceClient(conn).ListOperatorTypes(ctx, &clusterv1.ListOperatorTypesRequest{})
	if err != nil {
		return nil, false
	}
	have := map[string]bool{}
	for _, t := range resp.GetTypes() {
		have[t.GetName()] = true
	}
	return have, true
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (jm *JobManager) parseSpec(spec []byte, filename string, sets []string) (*jobgraphv1.JobGraph, []string, error) {
	if len(spec) == 0 {
		return nil, nil, status.Error(codes.InvalidArgument, "the request carries no job spec: send the spec file's bytes")
	}
	if filename == "" {
		filename = "job spec"
	}
	var graph *jobgraphv1.JobGraph
	err := guard("parse the spec", func() (err error) {
		graph, err = jobspec.Parse(spec, filename, jm.typeRegistry(), sets)
		return err
	})
	var perr *jobspec.Errors
	if errors.As(err, &perr) {
		return nil, perr.Lines(), nil
	}
	if err != nil {
		return nil, []string{filename + ": " + err.Error()}, nil
	}
	return graph, nil, nil
}

// ListOperatorTypes lists the JobManager's operator types.
func (jm *JobManager) ListOperatorTypes(context.Context, *clusterv1.ListOperatorTypesRequest) (*clusterv1.ListOperatorTypesResponse, error) {
	return &clusterv1.ListOperatorTypesResponse{Types: opinfo.Describe(jm.typeRegistry())}, nil
}

// CheckSavepoint runs savepoint.Check for the spec against the snapshot at
// the request's path with the JobManager's operator types. An unreadable
// snapshot is FailedPrecondition naming it.
func (jm *JobManager) CheckSavepoint(ctx context.Context, req *clusterv1.CheckSavepointRequest) (*clusterv1.CheckSavepointResponse, error) {
	if req.GetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "the request names no snapshot: give its directory URL or path")
	}
	graph, problems, err := jm.parseSpec(req.GetSpec(), req.GetFilename(), req.GetSets())
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return &clusterv1.CheckSavepointResponse{Problems: problems}, nil
	}
	var rep *savepoint.CheckReport
	err = guard("check the savepoint", func() (err error) {
		rep, err = savepoint.Check(ctx, graph, jm.typeRegistry(), savepoint.URL(req.GetPath()),
			savepoint.CheckOptions{AllowNonRestoredState: req.GetAllowNonRestoredState(), ReadData: req.GetDeep()})
		return err
	})
	if rep == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode the check report: %v", err)
	}
	return &clusterv1.CheckSavepointResponse{ReportJson: b}, nil
}

// guard runs f, turning a panic (an operator type's constructor or Open
// run in a dry run) into an error: a spec must not bring the JobManager
// down.
func guard(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: an operator type panicked: %v: fix the operator's constructor or Open", what, r)
		}
	}()
	return f()
}
