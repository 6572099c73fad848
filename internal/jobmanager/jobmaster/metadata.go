package jobmaster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint"
	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/keygroup"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// RestorePoint is a completed checkpoint or savepoint an attempt can
// start from.
type RestorePoint struct {
	id          int64
	own         bool   // a checkpoint of the job's own checkpoint storage
	storageBase string // URL the handles' paths are relative to
	location    string // the snapshot's directory, relative to storageBase
	dirURL      string // the snapshot's directory as a URL
	md          *checkpointv1.CheckpointMetadata
}

// ID is the checkpoint's id.
func (r *RestorePoint) ID() uint64 { return uint64(r.id) }

// URL is the snapshot's directory (what --from-checkpoint takes).
func (r *RestorePoint) URL() string { return r.dirURL }

// Metadata is the snapshot's metadata.
func (r *RestorePoint) Metadata() *checkpointv1.CheckpointMetadata { return r.md }

// Metadata assembles the metadata of checkpoint a (a Finalize action of
// the coordinator) of job jobID from its acknowledgements: per operator
// uid, the state of every subtask. now is the completion time.
func Metadata(jobID string, g *jobgraphv1.JobGraph, a checkpoint.Action, now time.Time) (*checkpointv1.CheckpointMetadata, error) {
	maxP := int32(g.GetMaxParallelism())
	if maxP == 0 {
		maxP = keygroup.DefaultMaxParallelism
	}
	md := &checkpointv1.CheckpointMetadata{
		FormatVersion: storage.FormatVersion, JobId: jobID, JobName: g.GetName(),
		CheckpointId: int64(a.ID), TriggerTimeMs: a.TriggerTime.UnixMilli(), CompletionTimeMs: now.UnixMilli(),
		Savepoint: a.Savepoint, Graph: g, Stats: &checkpointv1.CheckpointStats{},
	}
	byUID := map[string]*checkpointv1.OperatorState{}
	for _, v := range g.GetVertices() {
		uid := v.GetUid()
		if uid == "" {
			uid = v.GetId()
		}
		op := &checkpointv1.OperatorState{Uid: uid, OperatorId: v.GetId(), Type: v.GetType(),
			Parallelism: int32(jobgraph.VertexParallelism(g, v)), MaxParallelism: maxP}
		byUID[uid] = op
		md.Operators = append(md.Operators, op)
	}
	for _, ack := range a.Acks {
		if ack.Finished || len(ack.Handle) == 0 {
			continue
		}
		req := &clusterv1.AcknowledgeCheckpointRequest{}
		if err := proto.Unmarshal(ack.Handle, req); err != nil {
			return nil, fmt.Errorf("acknowledgement of %s: %w", ack.Task, err)
		}
		for uid, st := range req.GetOperators() {
			op := byUID[uid]
			if op == nil {
				return nil, fmt.Errorf("acknowledgement of %s carries state of unknown operator uid %q", ack.Task, uid)
			}
			op.Subtasks = append(op.Subtasks, st)
			md.Stats.StateSize += st.GetStateSize()
			md.Stats.UploadedSize += st.GetUploadedSize()
		}
		if t := req.GetTiming(); t != nil {
			md.Stats.MaxAlignmentMs = max(md.Stats.MaxAlignmentMs, t.GetAlignmentMs())
			md.Stats.MaxSyncMs = max(md.Stats.MaxSyncMs, t.GetSyncMs())
			md.Stats.MaxAsyncMs = max(md.Stats.MaxAsyncMs, t.GetAsyncMs())
		}
	}
	for _, op := range md.Operators {
		sort.Slice(op.Subtasks, func(x, y int) bool { return op.Subtasks[x].GetSubtask() < op.Subtasks[y].GetSubtask() })
	}
	md.Stats.DurationMs = now.Sub(a.TriggerTime).Milliseconds()
	return md, nil
}

// RestoreFor builds the restore section of one subtask's deployment: for
// every operator of its chain, the old subtask states it needs. With
// unchanged parallelism that is the state of the same subtask index; after
// rescaling it is every old subtask's state (the runtime keeps the key
// groups of its own range and its share of operator state).
func RestoreFor(r *RestorePoint, dep *clusterv1.TaskDeployment) *clusterv1.TaskRestore {
	if r == nil {
		return nil
	}
	out := &clusterv1.TaskRestore{CheckpointId: r.id, Location: r.location, StorageBase: r.storageBase, Operators: map[string]*clusterv1.RestoreOperator{}}
	byUID := map[string]*checkpointv1.OperatorState{}
	for _, op := range r.md.GetOperators() {
		byUID[op.GetUid()] = op
	}
	vertices := map[string]string{} // id -> uid
	for _, v := range dep.GetGraph().GetVertices() {
		uid := v.GetUid()
		if uid == "" {
			uid = v.GetId()
		}
		vertices[v.GetId()] = uid
	}
	sub := dep.GetId().GetSubtask()
	for _, opID := range dep.GetOperators() {
		uid := vertices[opID]
		old := byUID[uid]
		if old == nil || len(old.GetSubtasks()) == 0 {
			continue
		}
		ro := &clusterv1.RestoreOperator{}
		if old.GetParallelism() == dep.GetParallelism() {
			for _, st := range old.GetSubtasks() {
				if st.GetSubtask() == sub {
					ro.States = append(ro.States, st)
				}
			}
		} else {
			ro.States = append(ro.States, old.GetSubtasks()...)
		}
		out.Operators[uid] = ro
	}
	return out
}

// OpenRestore reads the checkpoint or savepoint a job is submitted with and
// checks that the job claims all of its state and, with a registry, that
// the sources whose types check their restored state
// (api.OperatorType.CheckRestore) still read every topic holding restored
// offsets (savepoint.CheckSources). allowNonRestored accepts dropping
// either. It does I/O.
func OpenRestore(ctx context.Context, rawURL string, g *jobgraphv1.JobGraph, allowNonRestored bool, reg *api.Registry) (*RestorePoint, error) {
	sn, err := storage.OpenSnapshot(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("restore from %s: %w", rawURL, err)
	}
	defer sn.Close()
	uids := map[string]bool{}
	for _, v := range g.GetVertices() {
		uid := v.GetUid()
		if uid == "" {
			uid = v.GetId()
		}
		uids[uid] = true
	}
	var unclaimed []string
	for _, op := range sn.Metadata.GetOperators() {
		if !uids[op.GetUid()] && len(op.GetSubtasks()) > 0 && hasState(op) {
			unclaimed = append(unclaimed, op.GetUid())
		}
	}
	if len(unclaimed) > 0 && !allowNonRestored {
		return nil, fmt.Errorf("snapshot %s holds state of operator uid(s) %s that the job does not have: give the operators those uids, or pass --allow-non-restored-state to drop that state",
			sn.Dir, strings.Join(unclaimed, ", "))
	}
	if reg != nil {
		reps, err := savepoint.CheckSources(ctx, g, reg, sn.Metadata, sn.Files)
		if err != nil {
			return nil, fmt.Errorf("restore from %s: %w", sn.Dir, err)
		}
		for _, rep := range reps {
			if rep.Error != "" {
				return nil, fmt.Errorf("restore from %s: operator %s (%s): its state cannot be read: %s", sn.Dir, rep.UID, rep.Type, rep.Error)
			}
			if msg := rep.Refusal(); msg != "" && !allowNonRestored {
				return nil, fmt.Errorf("restore from %s: %s", sn.Dir, msg)
			}
		}
	}
	r := &RestorePoint{id: sn.Metadata.GetCheckpointId(), storageBase: sn.Files.URL(), dirURL: sn.Dir, md: sn.Metadata}
	if !sn.Metadata.GetSavepoint() {
		r.location = storage.CheckpointDir(sn.Metadata.GetJobId(), sn.Metadata.GetCheckpointId())
	}
	return r, nil
}

func hasState(op *checkpointv1.OperatorState) bool {
	for _, st := range op.GetSubtasks() {
		if len(st.GetKeyed()) > 0 || len(st.GetOperatorState()) > 0 || len(st.GetSourcePosition()) > 0 || len(st.GetInFlight()) > 0 {
			return true
		}
	}
	return false
}
