package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowrt/flow/internal/minicluster"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/jobspec"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// loadSpec parses and validates a spec file against the registry. Spec
// problems come back as the *jobspec.Errors (one line each), exit code 2.
func (g *globals) loadSpec(path string, sets []string) (*jobgraphv1.JobGraph, *jobgraph.Plan, error) {
	graph, err := jobspec.LoadFile(path, g.env.Registry, sets)
	if err != nil {
		return nil, nil, withCode(ExitUsage, err)
	}
	plan, err := jobgraph.BuildPlan(graph)
	if err != nil { // jobspec already ran BuildPlan; kept for the task count
		return nil, nil, withCode(ExitUsage, fmt.Errorf("%s: %w", path, err))
	}
	return graph, plan, nil
}

func validateCommand(g *globals) *cobra.Command {
	var sets []string
	var local bool
	cmd := &cobra.Command{
		Use:   "validate JOB.yaml",
		Short: "Check a job spec against the cluster's operator types and print every problem",
		Long: `validate parses the job spec, applies --set overrides, checks every operator
against the registered types and builds the execution plan. The JobManager at
--jobmanager does the check with the operator types it was built with (so
types of a cluster built with the Go SDK are known); when none answers, or
with --local, flowctl checks against its own types and says so on stderr.
It submits nothing. It prints every problem (FILE:LINE:COL: what: fix) and
exits 2, or prints a summary and exits 0.`,
		Args: exactArgs(1, "one job spec file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !local {
				resp, err := g.clusterSpec(cmd.Context(), args[0], sets)
				if err == nil {
					fmt.Fprintf(g.env.Stdout, "ok: %d operators, %d tasks after chaining\n", len(resp.GetGraph().GetVertices()), resp.GetTasks())
					return nil
				}
				nc, ok := asNoCluster(err)
				if !ok {
					return err
				}
				g.fallbackNote(nc, "validated against")
			}
			graph, plan, err := g.loadSpec(args[0], sets)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "ok: %d operators, %d tasks after chaining\n", len(graph.GetVertices()), len(plan.Tasks))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a spec value: PATH=VALUE, e.g. operators.src.parallelism=4 (repeatable)")
	cmd.Flags().BoolVar(&local, "local", false, "check against flowctl's own operator types without asking the cluster")
	return cmd
}

func runCommand(g *globals) *cobra.Command {
	var sets []string
	var detach, allowNonRestored, progress bool
	var fromCheckpoint, fromSavepoint string
	cmd := &cobra.Command{
		Use:   "run JOB.yaml",
		Short: "Submit a job spec to the cluster and follow it",
		Long: `run has the JobManager validate the job spec with its operator types (as
validate does), submits it and, unless --detach is given, prints each status
change until the job ends. It exits 0 when the job finished, 3 when it failed
and 4 when it was canceled. Interrupting an attached run leaves the job
running.`,
		Args: exactArgs(1, "one job spec file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fromCheckpoint != "" && fromSavepoint != "" {
				return usageError(cmd, "give --from-savepoint or --from-checkpoint, not both")
			}
			if fromSavepoint != "" {
				fromCheckpoint = fromSavepoint
			}
			if allowNonRestored && fromCheckpoint == "" {
				return usageError(cmd, "--allow-non-restored-state goes with --from-savepoint or --from-checkpoint")
			}
			graph, err := g.specFor(cmd.Context(), args[0], sets)
			if err != nil {
				return err
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			id, err := c.submit(cmd.Context(), &clusterv1.SubmitJobRequest{
				Graph: graph, RestorePath: fromCheckpoint, AllowNonRestoredState: allowNonRestored,
			})
			if err != nil {
				return err
			}
			if detach {
				fmt.Fprintln(g.env.Stdout, id)
				return nil
			}
			fmt.Fprintf(g.env.Stdout, "submitted job %q as %s\n", graph.GetName(), id)
			err = c.follow(cmd.Context(), id, progress)
			if cmd.Context().Err() != nil {
				return withCode(ExitError, fmt.Errorf("interrupted: job %s keeps running: follow it with 'flowctl describe %s' or stop it with 'flowctl cancel %s'", id, id, id))
			}
			return err
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a spec value: PATH=VALUE (repeatable)")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "print the job id and return instead of following the job")
	cmd.Flags().BoolVar(&progress, "progress", true, "while following, show live progress: redrawn every second on a terminal, a plain line every 5s otherwise")
	cmd.Flags().StringVar(&fromSavepoint, "from-savepoint", "", "start from this savepoint (directory URL or path, or its _metadata); check it first with 'flowctl savepoint check'")
	cmd.Flags().StringVar(&fromCheckpoint, "from-checkpoint", "", "start from this retained checkpoint (or savepoint): directory URL or path, or its _metadata")
	cmd.Flags().BoolVar(&allowNonRestored, "allow-non-restored-state", false, "with --from-savepoint/--from-checkpoint: drop snapshot state that no operator of the job claims instead of failing")
	return cmd
}

func localCommand(g *globals) *cobra.Command {
	var (
		sets              []string
		taskManagers      int
		slots             int
		dataDir, logLevel string
		progress          bool
	)
	cmd := &cobra.Command{
		Use:   "local JOB.yaml",
		Short: "Run a job on an in-process cluster until it ends",
		Long: `local starts a JobManager and TaskManagers inside flowctl (the same components
the daemons run, on loopback ports), runs the job to its end as 'run' does,
and shuts the cluster down. Exit codes are those of run. Interrupting it
cancels the job.`,
		Args: exactArgs(1, "one job spec file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if taskManagers < 1 {
				return usageError(cmd, "--task-managers %d: use at least 1", taskManagers)
			}
			if slots < 1 {
				return usageError(cmd, "--slots %d: use at least 1", slots)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageError(cmd, "--log-level %q: use debug, info, warn or error", logLevel)
			}
			graph, plan, err := g.loadSpec(args[0], sets)
			if err != nil {
				return err
			}
			need := 0
			for _, t := range plan.Tasks {
				need = max(need, t.Parallelism)
			}
			if have := taskManagers * slots; need > have {
				return usageError(cmd, "the job needs %d slots (its largest parallelism) but --task-managers %d x --slots %d gives %d: raise --slots or --task-managers",
					need, taskManagers, slots, have)
			}
			ctx := cmd.Context()
			logger := slog.New(slog.NewTextHandler(g.env.Stderr, &slog.HandlerOptions{Level: level}))
			cluster, err := minicluster.Start(ctx, minicluster.Options{
				TaskManagers: taskManagers, Slots: slots, DataDir: dataDir, Registry: g.env.Registry, Logger: logger,
			})
			if err != nil {
				return withCode(ExitError, fmt.Errorf("start the local cluster: %w", err))
			}
			defer cluster.Close()
			c, err := dialAddr(g, cluster.JobManagerAddress())
			if err != nil {
				return err
			}
			defer c.Close()
			id, err := c.submit(ctx, &clusterv1.SubmitJobRequest{Graph: graph})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.env.Stdout, "submitted job %q as %s\n", graph.GetName(), id)
			err = c.follow(ctx, id, progress)
			if ctx.Err() != nil {
				// Interrupted: cancel the job before the cluster goes away.
				cctx, cancel := context.WithTimeout(context.Background(), g.timeout)
				defer cancel()
				_, _ = c.jm.CancelJob(cctx, &clusterv1.CancelJobRequest{JobId: id})
				_ = c.waitTerminal(cctx, id)
				return withCode(ExitCanceled, fmt.Errorf("interrupted: job %s canceled", id))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&sets, "set", nil, "override a spec value: PATH=VALUE (repeatable)")
	f.IntVar(&taskManagers, "task-managers", 2, "number of TaskManagers")
	f.IntVar(&slots, "slots", 4, "task slots per TaskManager")
	f.StringVar(&dataDir, "data-dir", "", "directory for the cluster's data (default: a temporary directory, removed at exit)")
	f.BoolVar(&progress, "progress", true, "show live progress: redrawn every second on a terminal, a plain line every 5s otherwise")
	f.StringVar(&logLevel, "log-level", "warn", "log level of the cluster's components: debug, info, warn, error")
	return cmd
}

// submit sends the request and returns the job id.
func (c *client) submit(ctx context.Context, req *clusterv1.SubmitJobRequest) (string, error) {
	if p := req.GetRestorePath(); p != "" && !strings.Contains(p, "://") {
		if abs, err := filepath.Abs(p); err == nil {
			req.RestorePath = "file://" + abs
		}
	}
	var resp *clusterv1.SubmitJobResponse
	err := c.call(ctx, func(ctx context.Context) (err error) {
		resp, err = c.jm.SubmitJob(ctx, req)
		return err
	})
	if err != nil {
		return "", c.rpcError(err, fmt.Sprintf("submit job %q", req.GetGraph().GetName()), "")
	}
	return resp.GetJobId(), nil
}

// follow prints the job's status changes until it ends and returns the
// outcome as an error with its exit code (nil when FINISHED).
// With progress, a live progress line (progress.go) runs alongside.
func (c *client) follow(ctx context.Context, id string, progress bool) error {
	stream, err := c.jm.WatchJob(ctx, &clusterv1.WatchJobRequest{JobId: id})
	if err != nil {
		return c.rpcError(err, "follow job "+id, id)
	}
	p := &printer{w: c.g.env.Stdout, tty: isTTY(c.g.env.Stdout)}
	if progress {
		pctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.followProgress(pctx, id, p)
		}()
		defer func() {
			stop()
			wg.Wait()
			p.clear()
		}()
	}
	var last *clusterv1.JobSummary
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return c.rpcError(err, "follow job "+id, id)
		}
		s := ev.GetSummary()
		line := fmt.Sprintf("%s  %-10s", c.g.env.Now().Format("15:04:05.000"), statusName(s.GetStatus()))
		if s.GetAttempt() > 0 {
			line += fmt.Sprintf("  attempt %d", s.GetAttempt())
		}
		if m := oneLine(ev.GetMessage()); m != "" {
			line += "  " + m
		}
		p.line(strings.TrimRight(line, " "))
		last = s
		if isTerminal(s.GetStatus()) {
			break
		}
	}
	if last == nil || !isTerminal(last.GetStatus()) {
		// The stream ended early; ask for the final state.
		var resp *clusterv1.GetJobResponse
		err := c.call(ctx, func(ctx context.Context) (err error) {
			resp, err = c.jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
			return err
		})
		if err != nil {
			return c.rpcError(err, "get job "+id, id)
		}
		last = resp.GetJob().GetSummary()
		if !isTerminal(last.GetStatus()) {
			return withCode(ExitError, fmt.Errorf("lost track of job %s (it is %s): follow it with 'flowctl describe %s'", id, statusName(last.GetStatus()), id))
		}
	}
	return outcome(id, last)
}

// waitTerminal waits until the job reaches a terminal status.
func (c *client) waitTerminal(ctx context.Context, id string) error {
	stream, err := c.jm.WatchJob(ctx, &clusterv1.WatchJobRequest{JobId: id})
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return err
		}
		if isTerminal(ev.GetSummary().GetStatus()) {
			return nil
		}
	}
}

func outcome(id string, s *clusterv1.JobSummary) error {
	took := ""
	if s.GetEndTimeMs() > 0 && s.GetSubmitTimeMs() > 0 {
		took = " after " + (time.Duration(s.GetEndTimeMs()-s.GetSubmitTimeMs()) * time.Millisecond).String()
	}
	switch s.GetStatus() {
	case clusterv1.JobStatus_JOB_STATUS_FINISHED:
		return nil
	case clusterv1.JobStatus_JOB_STATUS_FAILED:
		failure := oneLine(s.GetFailure())
		if failure == "" {
			failure = "no reason given"
		}
		return withCode(ExitFailed, fmt.Errorf("job %s failed%s: %s", id, took, failure))
	case clusterv1.JobStatus_JOB_STATUS_CANCELED:
		return withCode(ExitCanceled, fmt.Errorf("job %s was canceled%s", id, took))
	}
	return withCode(ExitError, fmt.Errorf("job %s ended in unexpected status %s", id, statusName(s.GetStatus())))
}

func isTerminal(s clusterv1.JobStatus) bool {
	switch s {
	case clusterv1.JobStatus_JOB_STATUS_FINISHED, clusterv1.JobStatus_JOB_STATUS_FAILED, clusterv1.JobStatus_JOB_STATUS_CANCELED:
		return true
	}
	return false
}

func statusName(s clusterv1.JobStatus) string {
	return strings.TrimPrefix(s.String(), "JOB_STATUS_")
}
