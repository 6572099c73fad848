package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// ExitIncompatible is the exit code of `savepoint check` when the job
// cannot start from the snapshot: like a spec that does not validate.
const ExitIncompatible = ExitUsage

func savepointCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "savepoint",
		Short: "Trigger, inspect, check and dispose of savepoints",
		Long: `A savepoint is a self-contained, relocatable snapshot of a job's state in a
backend-neutral format, taken on request: the way to upgrade, rescale, move a
job between heap and Pebble, and to look at its state offline. See
docs/savepoints.md.`,
		Args: exactArgs(0, "a subcommand: trigger, inspect, check or dispose"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError(cmd, "missing subcommand: trigger, inspect, check or dispose")
		},
	}
	cmd.AddCommand(savepointTriggerCommand(g), savepointInspectCommand(g), savepointCheckCommand(g), savepointDisposeCommand(g))
	return cmd
}

func savepointTriggerCommand(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "trigger JOB_ID [--dir URL]",
		Short: "Take a savepoint of a running job and print its path",
		Long: `trigger asks the JobManager for a savepoint of the job, prints its progress
("checkpoint 7: 3/6 subtasks acknowledged") on stderr and, once it is complete,
its directory URL on stdout. The savepoint is created in --dir (a directory
URL or a local path), or in the JobManager's --savepoint-dir. The job keeps
running. It exits 1, with the JobManager's reason, when the savepoint fails.`,
		Args: exactArgs(1, "one job id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := g.triggerSavepoint(cmd.Context(), &clusterv1.TriggerSavepointRequest{JobId: args[0], TargetDir: savepoint.URL(dir)})
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory (URL or local path) to create the savepoint in (default: the JobManager's --savepoint-dir)")
	return cmd
}

// triggerSavepoint runs TriggerSavepoint, printing progress on stderr and
// the path on stdout (or the last progress message as JSON), and returns
// the savepoint's path.
func (g *globals) triggerSavepoint(ctx context.Context, req *clusterv1.TriggerSavepointRequest) (string, error) {
	c, err := g.dial()
	if err != nil {
		return "", err
	}
	defer c.Close()
	id := req.GetJobId()
	what := "savepoint of job " + id
	if req.GetStop() {
		what = "stop job " + id + " with a savepoint"
	}
	// The stream lasts as long as the savepoint: no --timeout deadline
	// (interrupting flowctl abandons the wait, not the savepoint).
	stream, err := c.jm.TriggerSavepoint(ctx, req)
	if err != nil {
		return "", c.rpcError(err, what, id)
	}
	var last *clusterv1.SavepointProgress
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return "", withCode(ExitError, fmt.Errorf("%s: interrupted while waiting; the savepoint may still complete: see 'flowctl checkpoints %s'", what, id))
			}
			return "", c.rpcError(err, what, id)
		}
		last = p
		line := fmt.Sprintf("checkpoint %d: %d/%d subtasks acknowledged", p.GetCheckpointId(), p.GetAcknowledged(), p.GetTotal())
		if m := oneLine(p.GetMessage()); m != "" {
			line += " (" + m + ")"
		}
		fmt.Fprintln(g.env.Stderr, line)
		if p.GetDone() {
			break
		}
	}
	if last == nil || !last.GetDone() || last.GetPath() == "" {
		return "", withCode(ExitError, fmt.Errorf("%s: the JobManager ended the progress stream before the savepoint completed: see 'flowctl checkpoints %s'", what, id))
	}
	if g.machine() {
		return last.GetPath(), g.printJSON(last)
	}
	fmt.Fprintln(g.env.Stdout, last.GetPath())
	return last.GetPath(), nil
}

func savepointInspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect PATH",
		Short: "Show what a savepoint or checkpoint holds",
		Long: `inspect reads a savepoint or retained checkpoint (a directory URL or local
path, or its _metadata) and every state file it references, checking their
checksums, and shows per operator uid: type, parallelism, max parallelism, the
key groups that hold data, source positions, and per state its kind, codecs,
TTL, entries, keys and bytes. Native Pebble checkpoint files are verified
(their recorded sizes and Pebble's block checksums, downloaded one subtask at a
time into a temporary directory) but not counted: their entry counts are shown
as n/a. A missing or corrupt file makes inspect exit 1 with one line naming it.
-o json prints the full report.`,
		Args: exactArgs(1, "one savepoint path"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := savepoint.Inspect(cmd.Context(), savepoint.URL(args[0]))
			if err != nil {
				return withCode(ExitError, fmt.Errorf("inspect %s: %w", args[0], err))
			}
			if g.machine() {
				return g.writeValue(rep)
			}
			return g.printInspect(rep)
		},
	}
}

// writeValue prints v as indented JSON.
func (g *globals) writeValue(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(g.env.Stdout, "%s\n", b)
	return err
}

func (g *globals) printInspect(r *savepoint.Report) error {
	out := g.env.Stdout
	what := "checkpoint"
	if r.Savepoint {
		what = "savepoint"
	}
	fmt.Fprintf(out, "%s %s (format v%d)\n", what, r.Path, r.FormatVersion)
	fmt.Fprintf(out, "job %s (%s), checkpoint %d, taken %s\n", r.JobName, r.JobID, r.CheckpointID, fmtTime(r.TriggerTimeMs))
	fmt.Fprintf(out, "%d operators, %d states, %s entries, %d files, %s\n\n",
		r.Totals.Operators, r.Totals.States, countOrNA(r.Totals.Entries, r.Totals.CountsAvailable), r.Totals.Files, bytesText(r.Totals.FileBytes))
	w := newTable(out)
	row(w, "OPERATOR", "TYPE", "PARALLELISM", "MAX PARALLELISM", "KEY GROUPS WITH DATA", "SOURCE POSITIONS", "SIZE")
	for _, o := range r.Operators {
		kgs := ""
		switch {
		case len(o.KeyGroups) == 0:
		case !o.CountsAvailable:
			kgs = "n/a"
		default:
			kgs = savepoint.RangesString(o.KeyGroupsWithData)
		}
		row(w, o.UID, o.Type, fmt.Sprint(o.Parallelism), fmt.Sprint(o.MaxParallelism), kgs, fmt.Sprint(o.SourcePositions), bytesText(o.StateSize))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if r.Totals.States == 0 {
		return nil
	}
	fmt.Fprintln(out)
	w = newTable(out)
	row(w, "OPERATOR", "STATE", "KIND", "CODEC", "TTL", "ENTRIES", "KEYS", "BYTES", "KEY GROUPS")
	for _, o := range r.Operators {
		for _, s := range o.States {
			codec := s.Codec()
			if s.MaxValueVersion != nil && *s.MaxValueVersion > 0 {
				codec += fmt.Sprintf(" (values v%d)", *s.MaxValueVersion)
			}
			keys, kgs := countOrNA(s.Keys, s.Counted), countOrNA(int64(s.KeyGroups), s.Counted)
			if !s.Keyed {
				keys, kgs = "", ""
			}
			ttl := s.TTL // "1h0m0s update=... visibility=... time=...": the duration here, all in -o json
			if f := strings.Fields(ttl); len(f) > 0 {
				ttl = f[0]
			}
			row(w, o.UID, s.Name, s.Kind, codec, ttl, countOrNA(s.Entries, s.Counted), keys, countOrNA(s.Bytes, s.Counted), kgs)
		}
	}
	return w.Flush()
}

func countOrNA(n int64, ok bool) string {
	if !ok {
		return "n/a"
	}
	return fmt.Sprint(n)
}

func savepointCheckCommand(g *globals) *cobra.Command {
	var sets []string
	var allowNonRestored, deep, local bool
	cmd := &cobra.Command{
		Use:   "check JOB.yaml PATH",
		Short: "Dry run: can this job start from this savepoint?",
		Long: `check tells, before anything is stopped, whether the job spec can start from
the savepoint or checkpoint at PATH. It matches the snapshot's operators to the
job's by uid and opens each of the job's operators in a dry run (nothing is
stored or written) to learn the states it declares, then reports: state that
no operator claims and would be dropped (an error unless
--allow-non-restored-state), new operators and states, changed state kinds
and codecs, TTL switched on or off, a changed max parallelism and a
parallelism above the snapshot's max parallelism. Sources and sinks are
matched by uid but not opened. With --deep it reads every state file (checksums,
entry counts, the JSON codec versions stored). It exits 0 when the job can
start from the snapshot and 2 when it cannot.

The check runs on the JobManager at --jobmanager, with the operator types it
was built with, so PATH must be readable there (a local path is sent as an
absolute file:// URL); when no JobManager answers, or with --local, flowctl
checks here with its own types and says so on stderr.`,
		Args: exactArgs(2, "a job spec file and a savepoint path"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := savepoint.CheckOptions{AllowNonRestoredState: allowNonRestored, ReadData: deep}
			var rep *savepoint.CheckReport
			var err error
			if !local {
				rep, err = g.clusterCheck(cmd.Context(), args[0], sets, savepoint.URL(args[1]), opts)
				if nc, ok := asNoCluster(err); ok {
					g.fallbackNote(nc, "checking with")
					local = true
				} else if rep == nil {
					return err
				}
			}
			if local {
				graph, _, lerr := g.loadSpec(args[0], sets)
				if lerr != nil {
					return lerr
				}
				rep, err = savepoint.Check(cmd.Context(), graph, g.env.Registry, savepoint.URL(args[1]), opts)
				if rep == nil {
					return withCode(ExitError, err)
				}
			}
			if g.machine() {
				if werr := g.writeValue(rep); werr != nil {
					return werr
				}
			} else {
				g.printCheck(rep)
			}
			if err != nil {
				return withCode(ExitIncompatible, fmt.Errorf("job %q cannot start from %s: %d error(s) above", rep.Job, rep.Snapshot, rep.Errors))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&sets, "set", nil, "override a spec value: PATH=VALUE (repeatable)")
	f.BoolVar(&allowNonRestored, "allow-non-restored-state", false, "accept dropping snapshot state that no operator of the job claims (as run --allow-non-restored-state)")
	f.BoolVar(&deep, "deep", false, "read every state file in full: verify checksums, count entries, find stored JSON codec versions")
	f.BoolVar(&local, "local", false, "check here with flowctl's own operator types instead of on the JobManager")
	return cmd
}

func (g *globals) printCheck(r *savepoint.CheckReport) {
	out := g.env.Stdout
	fmt.Fprintf(out, "job %q against %s\n", r.Job, r.Snapshot)
	for _, f := range r.Findings {
		fmt.Fprintf(out, "%-7s  %s\n", f.Severity, f.Message)
	}
	g.printSources(r.Sources)
	if r.Compatible {
		fmt.Fprintf(out, "compatible: the job can start from this snapshot (%d warning(s))\n", r.Warnings)
		return
	}
	fmt.Fprintf(out, "incompatible: %d error(s), %d warning(s)\n", r.Errors, r.Warnings)
}

// printSources prints the sources section of a check: per source
// operator, what its config reads now, then every topic of the snapshot
// with its partitions and the offset each continues at.
func (g *globals) printSources(srcs []savepoint.SourceReport) {
	if len(srcs) == 0 {
		return
	}
	out := g.env.Stdout
	fmt.Fprintln(out, "sources:")
	for _, r := range srcs {
		if r.Error != "" {
			fmt.Fprintf(out, "  %s (%s): state unreadable: %s\n", r.UID, r.Type, r.Error)
			continue
		}
		fmt.Fprintf(out, "  %s (%s): reads %s\n", r.UID, r.Type, r.Now)
		removed := map[string]bool{}
		for _, t := range r.Removed {
			removed[t] = true
		}
		tw := newTable(out)
		fmt.Fprintln(tw, "    TOPIC\tPARTITION\tOFFSET\tSUBTASK\t")
		for _, st := range r.Streams {
			note := ""
			if removed[st.Name] {
				note = "no longer read"
			}
			if len(st.Partitions) == 0 {
				fmt.Fprintf(tw, "    %s\t-\t-\t-\tno offsets (%d partitions known, all finished)\n", st.Name, st.Known)
			}
			for _, p := range st.Partitions {
				off := fmt.Sprint(p.Offset)
				if p.Stop >= 0 {
					off += fmt.Sprintf(" (stop %d)", p.Stop)
				}
				fmt.Fprintf(tw, "    %s\t%d\t%s\t%d\t%s\n", st.Name, p.Partition, off, p.Subtask, note)
			}
		}
		for _, t := range r.Added {
			fmt.Fprintf(tw, "    %s\t-\t-\t-\tnew: no offsets in the snapshot\n", t)
		}
		_ = tw.Flush()
	}
}

func savepointDisposeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "dispose PATH",
		Short: "Delete a savepoint",
		Long: `dispose deletes the savepoint at PATH (a directory URL or local path, or its
_metadata): exactly the files under its directory, _metadata first, so a
half-deleted savepoint is never mistaken for a complete one. It refuses
checkpoints (retention deletes those) and incomplete directories.`,
		Args: exactArgs(1, "one savepoint path"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			u := savepoint.URL(args[0])
			// List first, to say what was deleted.
			var files int
			var size int64
			var dir string
			if sn, err := storage.OpenSnapshot(ctx, u); err == nil {
				dir = sn.Dir
				if sn.Metadata.GetSavepoint() {
					objs, lerr := sn.Files.List(ctx, "")
					if lerr == nil {
						for _, o := range objs {
							files++
							size += o.Size
						}
					}
				}
				_ = sn.Close()
			}
			if err := storage.DisposeSavepoint(ctx, u); err != nil {
				return withCode(ExitError, err)
			}
			if dir == "" {
				dir = u
			}
			fmt.Fprintf(g.env.Stdout, "disposed of savepoint %s: deleted %d files (%s)\n", strings.TrimSuffix(dir, "/"), files, bytesText(size))
			return nil
		},
	}
}

// clusterCheck runs the savepoint check on the JobManager. The error is an
// *errNoCluster when it could not be asked; the report is nil on any
// other failure.
func (g *globals) clusterCheck(ctx context.Context, path string, sets []string, snapshot string, opts savepoint.CheckOptions) (*savepoint.CheckReport, error) {
	data, err := readSpec(path)
	if err != nil {
		return nil, err
	}
	resp, err := askCluster(ctx, g, "check the savepoint", func(ctx context.Context, jm clusterv1.JobManagerServiceClient) (*clusterv1.CheckSavepointResponse, error) {
		return jm.CheckSavepoint(ctx, &clusterv1.CheckSavepointRequest{Spec: data, Filename: path, Sets: sets, Path: snapshot,
			AllowNonRestoredState: opts.AllowNonRestoredState, Deep: opts.ReadData})
	})
	if err != nil {
		return nil, err
	}
	if len(resp.GetProblems()) > 0 {
		return nil, problemsError(resp.GetProblems())
	}
	var rep savepoint.CheckReport
	if err := json.Unmarshal(resp.GetReportJson(), &rep); err != nil {
		return nil, withCode(ExitError, fmt.Errorf("check the savepoint: the JobManager's report does not decode: %v", err))
	}
	if !rep.Compatible {
		return &rep, errors.New("incompatible")
	}
	return &rep, nil
}
