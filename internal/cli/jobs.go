package cli

import (
	"context"
	"fmt"
	"github.com/flowrt/flow/internal/apijson"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// printJSON writes m in the machine format (-o json or -o yaml): the
// rendering the REST API uses too (internal/apijson: plain enum values,
// numbers as numbers, RFC 3339 times, configs as objects).
func (g *globals) printJSON(m proto.Message) error {
	render := apijson.Marshal
	if g.output == "yaml" {
		render = apijson.MarshalYAML
	}
	b, err := render(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", g.output, err)
	}
	_, err = fmt.Fprintf(g.env.Stdout, "%s\n", strings.TrimRight(string(b), "\n"))
	return err
}

// machine reports whether the output is for machines (-o json or yaml).
func (g *globals) machine() bool { return g.output == "json" || g.output == "yaml" }

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// row writes tab-separated cells; empty cells print as "-".
func row(w io.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

func fmtTime(ms int64) string {
	if ms <= 0 {
		return ""
	}
	return time.UnixMilli(ms).Format("2006-01-02 15:04:05")
}

func (g *globals) fmtDuration(s *clusterv1.JobSummary) string {
	if s.GetSubmitTimeMs() <= 0 {
		return ""
	}
	end := s.GetEndTimeMs()
	if end <= 0 {
		end = g.env.Now().UnixMilli()
	}
	d := time.Duration(end-s.GetSubmitTimeMs()) * time.Millisecond
	if d < 0 {
		d = 0
	}
	return d.Round(time.Millisecond).String()
}

func listCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the cluster's jobs",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := query(cmd.Context(), g, "list jobs", "", func(ctx context.Context, jm clusterv1.JobManagerServiceClient) (*clusterv1.ListJobsResponse, error) {
				return jm.ListJobs(ctx, &clusterv1.ListJobsRequest{})
			})
			if err != nil {
				return err
			}
			if g.machine() {
				return g.printJSON(resp)
			}
			w := newTable(g.env.Stdout)
			row(w, "JOB ID", "NAME", "STATUS", "SUBMITTED", "DURATION", "ATTEMPT")
			for _, j := range resp.GetJobs() {
				row(w, j.GetJobId(), j.GetName(), statusName(j.GetStatus()), fmtTime(j.GetSubmitTimeMs()), g.fmtDuration(j), fmt.Sprint(j.GetAttempt()))
			}
			return w.Flush()
		},
	}
}

func describeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe JOB_ID",
		Short: "Show a job's tasks, where its subtasks run, and its history",
		Args:  exactArgs(1, "one job id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			resp, err := query(cmd.Context(), g, "describe job "+id, id, func(ctx context.Context, jm clusterv1.JobManagerServiceClient) (*clusterv1.GetJobResponse, error) {
				return jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
			})
			if err != nil {
				return err
			}
			if g.machine() {
				return g.printJSON(resp)
			}
			return g.describe(resp.GetJob())
		},
	}
}

func (g *globals) describe(j *clusterv1.JobDetails) error {
	out := g.env.Stdout
	s := j.GetSummary()
	w := newTable(out)
	row(w, "Job:", s.GetJobId())
	row(w, "Name:", s.GetName())
	row(w, "Status:", statusName(s.GetStatus()))
	row(w, "Submitted:", fmtTime(s.GetSubmitTimeMs()))
	if s.GetEndTimeMs() > 0 {
		row(w, "Ended:", fmtTime(s.GetEndTimeMs()))
	}
	row(w, "Duration:", g.fmtDuration(s))
	row(w, "Attempt:", fmt.Sprint(s.GetAttempt()))
	if s.GetFailure() != "" {
		row(w, "Failure:", s.GetFailure())
	}
	if gr := j.GetGraph(); gr != nil {
		row(w, "Parallelism:", fmt.Sprintf("%d (max %d)", gr.GetParallelism(), gr.GetMaxParallelism()))
	}
	if err := w.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nTasks:")
	w = newTable(out)
	row(w, "  TASK", "OPERATORS", "PARALLELISM", "SUBTASK", "TASKMANAGER", "STATE", "FAILURE")
	for _, t := range j.GetTasks() {
		ops := strings.Join(t.GetOperators(), " -> ")
		if len(t.GetSubtasks()) == 0 {
			row(w, "  "+t.GetId(), ops, fmt.Sprint(t.GetParallelism()), "", "", "", "")
		}
		for i, st := range t.GetSubtasks() {
			task, opsCell, par := "", " ", " "
			if i == 0 {
				task, opsCell, par = t.GetId(), ops, fmt.Sprint(t.GetParallelism())
			}
			tm := st.GetTaskManagerId()
			if a := st.GetTaskManagerAddress(); a != "" && tm != "" {
				tm += " (" + a + ")"
			}
			row(w, "  "+task, opsCell, par, fmt.Sprint(st.GetIndex()), tm,
				strings.TrimPrefix(st.GetState().String(), "TASK_STATE_"), oneLine(st.GetFailure()))
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}

	if len(j.GetHistory()) > 0 {
		fmt.Fprintln(out, "\nHistory:")
		w = newTable(out)
		for _, h := range j.GetHistory() {
			row(w, "  "+fmtTime(h.GetTimeMs()), statusName(h.GetStatus()), oneLine(h.GetMessage()))
		}
		return w.Flush()
	}
	return nil
}

// oneLine flattens a server message to one line, dropping the source
// excerpt lines ("| ...") expression errors carry.
func oneLine(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "|") {
			keep = append(keep, t)
		}
	}
	return strings.Join(strings.Fields(strings.Join(keep, " ")), " ")
}

func cancelCommand(g *globals) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "cancel JOB_ID",
		Short: "Cancel a running job",
		Args:  exactArgs(1, "one job id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			err = c.call(cmd.Context(), func(ctx context.Context) error {
				_, err := c.jm.CancelJob(ctx, &clusterv1.CancelJobRequest{JobId: id})
				return err
			})
			if err != nil {
				return c.rpcError(err, "cancel job "+id, id)
			}
			if !wait {
				fmt.Fprintf(g.env.Stdout, "cancel requested for job %s\n", id)
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			if err := c.waitTerminal(ctx, id); err != nil {
				return c.rpcError(err, "wait for job "+id+" to cancel", id)
			}
			fmt.Fprintf(g.env.Stdout, "job %s canceled\n", id)
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait (up to --timeout) until the job has stopped")
	return cmd
}

func taskManagersCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "taskmanagers",
		Aliases: []string{"tms"},
		Short:   "List the TaskManagers registered with the JobManager",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := query(cmd.Context(), g, "list TaskManagers", "", func(ctx context.Context, jm clusterv1.JobManagerServiceClient) (*clusterv1.ListTaskManagersResponse, error) {
				return jm.ListTaskManagers(ctx, &clusterv1.ListTaskManagersRequest{})
			})
			if err != nil {
				return err
			}
			if g.machine() {
				return g.printJSON(resp)
			}
			w := newTable(g.env.Stdout)
			row(w, "ID", "ADDRESS", "STATE", "SLOTS", "FREE", "REGISTERED", "LAST HEARTBEAT")
			for _, tm := range resp.GetTaskManagers() {
				hb := ""
				if tm.GetLastHeartbeatMs() > 0 {
					hb = (time.Duration(g.env.Now().UnixMilli()-tm.GetLastHeartbeatMs()) * time.Millisecond).Round(100*time.Millisecond).String() + " ago"
				}
				row(w, tm.GetId(), tm.GetAddress(), strings.TrimPrefix(tm.GetState().String(), "TASK_MANAGER_STATE_"),
					fmt.Sprint(tm.GetSlots()), fmt.Sprint(tm.GetFreeSlots()), fmtTime(tm.GetRegisteredTimeMs()), hb)
			}
			return w.Flush()
		},
	}
}
