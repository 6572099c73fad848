package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

func checkpointsCommand(g *globals) *cobra.Command {
	var tasks bool
	cmd := &cobra.Command{
		Use:   "checkpoints JOB_ID",
		Short: "Show a job's checkpoint history with sizes and per-phase timings",
		Long: `checkpoints lists a job's checkpoints, newest first: id, status, trigger
time, duration, full and uploaded (incremental) size, and the longest barrier
alignment. With --tasks it adds each subtask's phase timings: alignment, the
synchronous snapshot on the task thread, and the asynchronous upload.`,
		Args: exactArgs(1, "one job id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			resp, err := query(cmd.Context(), g, "list checkpoints of job "+id, id, func(ctx context.Context, jm clusterv1.JobManagerServiceClient) (*clusterv1.ListCheckpointsResponse, error) {
				return jm.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: id})
			})
			if err != nil {
				return err
			}
			if g.machine() {
				return g.printJSON(resp)
			}
			out := g.env.Stdout
			if len(resp.GetCheckpoints()) == 0 {
				fmt.Fprintf(out, "job %s has no checkpoints (is checkpoints.interval set in its spec?)\n", id)
				return nil
			}
			w := newTable(out)
			row(w, "ID", "STATUS", "ATTEMPT", "TRIGGERED", "DURATION", "STATE SIZE", "UPLOADED", "MAX ALIGNMENT", "INFO")
			for _, cp := range resp.GetCheckpoints() {
				info := cp.GetFailure()
				if cp.GetSavepoint() {
					info = strings.TrimSpace("savepoint " + info)
				}
				row(w, fmt.Sprint(cp.GetId()), checkpointStatus(cp.GetStatus()), fmt.Sprint(cp.GetAttempt()), fmtTime(cp.GetTriggerTimeMs()),
					fmt.Sprintf("%dms", cp.GetDurationMs()), bytesText(cp.GetStateSize()), bytesText(cp.GetUploadedSize()),
					fmt.Sprintf("%dms", cp.GetMaxAlignmentMs()), info)
				if tasks {
					for _, t := range cp.GetTasks() {
						row(w, "", fmt.Sprintf("  %s/%d", t.GetTask(), t.GetSubtask()), "", "",
							fmt.Sprintf("sync %dms async %dms", t.GetSyncMs(), t.GetAsyncMs()), bytesText(t.GetStateSize()), bytesText(t.GetUploadedSize()),
							fmt.Sprintf("%dms", t.GetAlignmentMs()), "")
					}
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if p := resp.GetLatestCompletedPath(); p != "" {
				fmt.Fprintf(out, "\nlatest completed: %s\n", p)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&tasks, "tasks", false, "show each subtask's phase timings")
	return cmd
}

func checkpointStatus(s clusterv1.CheckpointStatus) string {
	return strings.TrimPrefix(s.String(), "CHECKPOINT_STATUS_")
}

// bytesText renders a byte count with a binary unit.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
