package savepoint

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Finding codes of the restore checks of sources (api.OperatorType.
// CheckRestore).
const (
	CodeSourceState      = "source-state"
	CodeSourceRemoved    = "source-topics-removed"
	CodeSourceAdded      = "source-topics-added"
	CodeSourceNote       = "source-note"
	CodeSourceUnreadable = "source-state-unreadable"
)

// SourceReport is the restore check of one operator of the job whose type
// has a CheckRestore hook and whose uid has state in the snapshot: the
// positions the snapshot holds and what the job's config does with them.
type SourceReport struct {
	UID        string `json:"uid"`
	OperatorID string `json:"operatorId"`
	Type       string `json:"type"`
	api.RestoreCheck
	// Error is why the hook could not read the state (then the rest is
	// empty).
	Error string `json:"error,omitempty"`
}

// Refusal is the one-line reason a restore is refused when the job's
// config no longer reads streams that hold restored positions, or "" when
// it still reads them all.
func (r *SourceReport) Refusal() string {
	if len(r.Removed) == 0 {
		return ""
	}
	now := ""
	if r.Now != "" {
		now = " (it now reads " + r.Now
		if len(r.Added) > 0 {
			now += "; added: " + strings.Join(r.Added, ", ")
		}
		now += ")"
	}
	return fmt.Sprintf("operator %s (%s): the snapshot holds offsets of topic(s) %s that its config no longer reads%s: list them again, or pass --allow-non-restored-state to drop those offsets",
		r.UID, r.Type, strings.Join(r.Removed, ", "), now)
}

// Summary renders the positions on one line: "topic in: 0@120 1@98;
// topic b: 0@7".
func (r *SourceReport) Summary() string {
	if len(r.Streams) == 0 {
		return "no positions"
	}
	parts := make([]string, 0, len(r.Streams))
	for _, s := range r.Streams {
		ps := make([]string, 0, len(s.Partitions))
		for _, p := range s.Partitions {
			ps = append(ps, fmt.Sprintf("%d@%d", p.Partition, p.Offset))
		}
		parts = append(parts, fmt.Sprintf("topic %s: %d partition(s) %s", s.Name, len(s.Partitions), strings.Join(ps, " ")))
	}
	return strings.Join(parts, "; ")
}

// CheckSources runs the CheckRestore hook of every operator of graph whose
// type has one (looked up in reg) and whose uid has subtask state in the
// snapshot md (files read from src), and returns their reports in vertex
// order. Only operator-state files are read. A hook that panics or fails
// gives a report with Error; an operator type missing from reg is skipped
// (the job's validation names it).
func CheckSources(ctx context.Context, graph *jobgraphv1.JobGraph, reg *api.Registry, md *checkpointv1.CheckpointMetadata, src snapshot.Source) ([]SourceReport, error) {
	byUID := map[string]*checkpointv1.OperatorState{}
	for _, op := range md.GetOperators() {
		byUID[op.GetUid()] = op
	}
	out := []SourceReport{}
	for _, v := range graph.GetVertices() {
		typ, err := reg.LookupKind(v.GetType(), vertexKind(v.GetKind()))
		if err != nil || typ.CheckRestore == nil {
			continue
		}
		uid := VertexUID(v)
		op := byUID[uid]
		if op == nil || len(op.GetSubtasks()) == 0 {
			continue
		}
		rep := SourceReport{UID: uid, OperatorID: v.GetId(), Type: v.GetType()}
		view, err := restoreView(ctx, v, uid, op, src)
		if err != nil {
			return nil, fmt.Errorf("operator %q: %w", uid, err)
		}
		if view.Config, err = typ.DecodeConfigJSON(v.GetConfig()); err != nil {
			return nil, fmt.Errorf("operator %q: config: %w", v.GetId(), err)
		}
		rc, err := runCheckRestore(typ.CheckRestore, view)
		if err != nil {
			rep.Error = err.Error()
		} else {
			rep.RestoreCheck = rc
		}
		out = append(out, rep)
	}
	return out, nil
}

func restoreView(ctx context.Context, v *jobgraphv1.Vertex, uid string, op *checkpointv1.OperatorState, src snapshot.Source) (api.RestoreView, error) {
	view := api.RestoreView{OperatorID: v.GetId(), UID: uid, Parallelism: int(op.GetParallelism()), ListStates: map[string][][]byte{}}
	subs := append([]*checkpointv1.SubtaskState(nil), op.GetSubtasks()...)
	sort.SliceStable(subs, func(i, j int) bool { return subs[i].GetSubtask() < subs[j].GetSubtask() })
	open := snapshot.OpenFrom(src)
	for _, st := range subs {
		if len(st.GetOperatorState()) == 0 {
			continue
		}
		states, err := snapshot.ReadOperatorState(ctx, open, st.GetOperatorState())
		if err != nil {
			return view, fmt.Errorf("subtask %d: %w", st.GetSubtask(), err)
		}
		for _, s := range states {
			if s.Spec.Name == api.SourceSplitsState {
				for _, it := range s.Items {
					view.Splits = append(view.Splits, api.RestoredSplit{Subtask: int(st.GetSubtask()), Data: it})
				}
				continue
			}
			if s.Spec.Mode == api.SplitList || s.Spec.Mode == api.UnionList {
				view.ListStates[s.Spec.Name] = append(view.ListStates[s.Spec.Name], s.Items...)
			}
		}
	}
	return view, nil
}

// runCheckRestore calls a hook, turning a panic into an error: a snapshot
// must not bring the JobManager down.
func runCheckRestore(f func(api.RestoreView) (api.RestoreCheck, error), v api.RestoreView) (rc api.RestoreCheck, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the type's CheckRestore panicked: %v", p)
		}
	}()
	return f(v)
}

// sources adds the findings of the source reports.
func (c *checker) sources(reps []SourceReport) {
	for i := range reps {
		r := &reps[i]
		if r.Error != "" {
			c.add(SeverityError, CodeSourceUnreadable, r.UID, "", "operator %s (%s): its snapshot state cannot be read: %s", r.UID, r.Type, r.Error)
			continue
		}
		c.add(SeverityInfo, CodeSourceState, r.UID, "", "operator %s (%s) restores %s", r.UID, r.Type, r.Summary())
		if msg := r.Refusal(); msg != "" {
			if c.opts.AllowNonRestoredState {
				c.add(SeverityWarning, CodeSourceRemoved, r.UID, "", "operator %s (%s): the offsets of topic(s) %s are dropped (--allow-non-restored-state): the config no longer reads them",
					r.UID, r.Type, strings.Join(r.Removed, ", "))
			} else {
				c.add(SeverityError, CodeSourceRemoved, r.UID, "", "%s", msg)
			}
		}
		if len(r.Added) > 0 {
			c.add(SeverityInfo, CodeSourceAdded, r.UID, "", "operator %s (%s): topic(s) %s have no offsets in the snapshot: they start as on a first start",
				r.UID, r.Type, strings.Join(r.Added, ", "))
		}
		for _, n := range r.Notes {
			c.add(SeverityInfo, CodeSourceNote, r.UID, "", "operator %s (%s): %s", r.UID, r.Type, n)
		}
	}
}
