package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

func stopCommand(g *globals) *cobra.Command {
	var dir string
	var drain bool
	cmd := &cobra.Command{
		Use:   "stop JOB_ID [--savepoint-dir URL] [--drain]",
		Short: "Take a savepoint, then stop the job",
		Long: `stop takes a savepoint of the job and stops it once the savepoint is complete
(the job ends FINISHED): the first step of an upgrade. Progress goes to stderr,
the savepoint's path to stdout; restart from it with
'flowctl run JOB.yaml --from-checkpoint PATH'. With --drain the sources end and
event time advances to the end first, so every event-time timer and window
fires (use it when the job will not be resumed). The savepoint goes to
--savepoint-dir (URL or local path) or the JobManager's --savepoint-dir. If
the savepoint fails, the job keeps running and stop exits 1.`,
		Args: exactArgs(1, "one job id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			path, err := g.triggerSavepoint(cmd.Context(), &clusterv1.TriggerSavepointRequest{
				JobId: id, TargetDir: savepoint.URL(dir), Stop: true, Drain: drain,
			})
			if err != nil {
				return err
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			// Wait for the job to end (it stops right after the savepoint).
			ctx := cmd.Context()
			if err := c.waitTerminal(ctx, id); err != nil {
				if ctx.Err() != nil {
					return withCode(ExitError, fmt.Errorf("interrupted: the savepoint %s is complete and job %s is stopping: follow it with 'flowctl describe %s'", path, id, id))
				}
				return c.rpcError(err, "wait for job "+id+" to stop", id)
			}
			var resp *clusterv1.GetJobResponse
			err = c.call(ctx, func(ctx context.Context) (err error) {
				resp, err = c.jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
				return err
			})
			if err != nil {
				return c.rpcError(err, "get job "+id, id)
			}
			s := resp.GetJob().GetSummary()
			if err := outcome(id, s); err != nil {
				return fmt.Errorf("the savepoint %s is complete, but: %w", path, err)
			}
			fmt.Fprintf(g.env.Stderr, "job %s stopped (%s); resume it with: flowctl run JOB.yaml --from-checkpoint %s\n", id, statusName(s.GetStatus()), path)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "savepoint-dir", "", "directory (URL or local path) to create the savepoint in (default: the JobManager's --savepoint-dir)")
	cmd.Flags().BoolVar(&drain, "drain", false, "end the sources and advance event time to the end (fire all timers and windows) before the savepoint")
	return cmd
}
