package cli

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowrt/flow/internal/opinfo"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// Shell completion. cobra's `flowctl completion bash|zsh|fish|powershell`
// prints the script; the script calls `flowctl __complete ...`, which lands
// here for the dynamic parts: job ids (asked from the JobManager at
// --jobmanager), operator types (the cluster's, or flowctl's own when no
// JobManager answers), spec files and -o values. A completion never
// prints an error: a JobManager that does not answer within a short
// deadline just yields no candidates.

// completionTimeout bounds the JobManager call behind a completion: a shell
// waits for it at each TAB.
const completionTimeout = 2 * time.Second

// jobFilter chooses the jobs a command can act on.
type jobFilter func(clusterv1.JobStatus) bool

func anyJob(clusterv1.JobStatus) bool { return true }

// activeJob is a job that cancel, stop and savepoint trigger can act on.
func activeJob(s clusterv1.JobStatus) bool {
	switch s {
	case clusterv1.JobStatus_JOB_STATUS_FINISHED, clusterv1.JobStatus_JOB_STATUS_CANCELED, clusterv1.JobStatus_JOB_STATUS_FAILED:
		return false
	}
	return true
}

// completeJobIDs completes the JOB_ID argument with the cluster's jobs that
// pass keep, each described by its name and status.
func (g *globals) completeJobIDs(keep jobFilter) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		resp, err := completionQuery(cmd.Context(), g, func(ctx context.Context, jm clusterv1.JobManagerServiceClient) (*clusterv1.ListJobsResponse, error) {
			return jm.ListJobs(ctx, &clusterv1.ListJobsRequest{})
		})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, j := range resp.GetJobs() {
			if !keep(j.GetStatus()) || !strings.HasPrefix(j.GetJobId(), toComplete) {
				continue
			}
			out = append(out, cobra.CompletionWithDesc(j.GetJobId(), j.GetName()+" "+statusName(j.GetStatus())))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeOperatorTypes completes `operators TYPE` with the cluster's
// operator types, or flowctl's own when no JobManager answers.
func (g *globals) completeOperatorTypes(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var types []*clusterv1.OperatorTypeInfo
	if resp, err := completionQuery(cmd.Context(), g, func(ctx context.Context, jm clusterv1.JobManagerServiceClient) (*clusterv1.ListOperatorTypesResponse, error) {
		return jm.ListOperatorTypes(ctx, &clusterv1.ListOperatorTypesRequest{})
	}); err == nil {
		types = resp.GetTypes()
	} else {
		types = opinfo.Describe(g.env.Registry)
	}
	var out []cobra.Completion
	for _, t := range types {
		if strings.HasPrefix(t.GetName(), toComplete) {
			out = append(out, cobra.CompletionWithDesc(t.GetName(), t.GetKind()))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeSpecFile completes a JOB.yaml argument with YAML files.
func completeSpecFile(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return []cobra.Completion{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}

// completionQuery makes one JobManager call for a completion, within
// completionTimeout (or --timeout when shorter).
func completionQuery[R any](ctx context.Context, g *globals, rpc func(context.Context, clusterv1.JobManagerServiceClient) (R, error)) (R, error) {
	var resp R
	c, err := g.dial()
	if err != nil {
		return resp, err
	}
	defer c.Close()
	d := completionTimeout
	if g.timeout > 0 && g.timeout < d {
		d = g.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return rpc(ctx, c.jm)
}

// registerCompletions wires the completion functions into the command tree
// built by NewCommand.
func (g *globals) registerCompletions(root *cobra.Command) {
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]cobra.Completion{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	walk(root, func(cmd *cobra.Command) {
		switch cmd.CommandPath() {
		case "flowctl describe", "flowctl checkpoints":
			cmd.ValidArgsFunction = g.completeJobIDs(anyJob)
		case "flowctl cancel", "flowctl stop", "flowctl savepoint trigger":
			cmd.ValidArgsFunction = g.completeJobIDs(activeJob)
		case "flowctl operators":
			cmd.ValidArgsFunction = g.completeOperatorTypes
		case "flowctl run", "flowctl local", "flowctl validate":
			cmd.ValidArgsFunction = completeSpecFile
		}
	})
}

func walk(cmd *cobra.Command, f func(*cobra.Command)) {
	f(cmd)
	for _, c := range cmd.Commands() {
		walk(c, f)
	}
}
