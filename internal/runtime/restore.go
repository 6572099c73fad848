package runtime

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// restoreState is what a task restores from TaskDeployment.restore, read
// before its operators open.
type restoreState struct {
	id    int64
	where string // the checkpoint's location for messages
	store *storage.Storage
	// keyed handles and source position by operator
	keyed    map[*vertexInfo][]*checkpointv1.KeyedStateHandle
	position []byte
	hasPos   bool
	// splits is the source's share of the snapshot's splits (hasSplits:
	// the snapshot holds splits for the source's uid, possibly none for
	// this subtask).
	splits    [][]byte
	hasSplits bool
	// in-flight data: input buffers by channel, output buffers in order
	inFlight  map[int][][]byte
	outFlight []inFlightEntry
}

// errorf formats a restore failure: one line naming the checkpoint.
func (r *restoreState) errorf(format string, args ...any) error {
	return &RestoreError{CheckpointID: r.id, Where: r.where, Err: fmt.Errorf(format, args...)}
}

// prepareRestore reads what the deployment restores: operator state goes
// into the operators' stores (before Open declares it); keyed handles,
// source position and in-flight data are kept for later steps.
func (t *task) prepareRestore() error {
	tr := t.d.GetRestore()
	if tr == nil {
		return nil
	}
	r := &restoreState{id: tr.GetCheckpointId(), where: tr.GetStorageBase(), keyed: map[*vertexInfo][]*checkpointv1.KeyedStateHandle{}}
	if loc := tr.GetLocation(); loc != "" {
		if joined, err := url.JoinPath(r.where, loc); err == nil { // keeps a query (s3://b?region=x)
			r.where = joined
		} else {
			r.where += "/" + loc
		}
	}
	t.restore = r
	if len(tr.GetOperators()) == 0 {
		return nil
	}
	store, err := t.storage(tr.GetStorageBase())
	if err != nil {
		return r.errorf("%w", err)
	}
	r.store = store
	ctx := t.ctx
	for i, vi := range t.vertices {
		ro := tr.GetOperators()[vi.uid()]
		if ro == nil || len(ro.GetStates()) == 0 {
			continue
		}
		states := ro.GetStates()
		rescaled, err := t.rescaled(ctx, r, tr.GetLocation(), vi, states)
		if err != nil {
			return err
		}
		var mine *checkpointv1.SubtaskState
		for _, st := range states {
			if int(st.GetSubtask()) == t.subtask {
				mine = st
			}
			r.keyed[vi] = append(r.keyed[vi], st.GetKeyed()...)
		}
		// Operator state: the same subtask's, or this subtask's share of
		// every old subtask's after rescaling.
		var opStates []statebackend.OperatorState
		if !rescaled {
			if mine == nil {
				return r.errorf("operator uid %q: no state for subtask %d", vi.uid(), t.subtask)
			}
			if opStates, err = snapshot.ReadOperatorState(ctx, store.Open, mine.GetOperatorState()); err != nil {
				return r.errorf("operator uid %q: %w", vi.uid(), err)
			}
		} else {
			// Old subtasks in subtask order: split lists and source splits
			// are assigned by their position in the concatenation.
			byIndex := slices.Clone(states)
			slices.SortStableFunc(byIndex, func(a, b *checkpointv1.SubtaskState) int { return cmp.Compare(a.GetSubtask(), b.GetSubtask()) })
			old := make([][]*checkpointv1.OperatorStateHandle, len(byIndex))
			for j, st := range byIndex {
				old[j] = st.GetOperatorState()
			}
			if vi == t.srcVI {
				opStates, err = t.redistributeSource(ctx, r, vi, store.Open, old)
				if err != nil {
					return err
				}
				if !r.hasSplits {
					for _, st := range byIndex {
						if len(st.GetSourcePosition()) > 0 {
							return r.errorf("operator uid %q: the snapshot holds a position per source subtask, which cannot be redistributed to parallelism %d: restore it with the snapshot's parallelism (%d subtasks), take a savepoint there with a source that implements api.SplitSource, and rescale from that", vi.uid(), t.parallelism, len(byIndex))
						}
					}
				}
			} else {
				shares, err := snapshot.RedistributeOperatorState(ctx, store.Open, old, t.parallelism)
				if err != nil {
					return r.errorf("operator uid %q: %w", vi.uid(), err)
				}
				opStates = shares[t.subtask]
			}
		}
		if len(opStates) > 0 {
			if err := vi.state.ops.Restore(opStates); err != nil {
				return r.errorf("operator uid %q: operator state: %w", vi.uid(), err)
			}
		}
		if vi == t.srcVI && !rescaled {
			for _, st := range opStates {
				if st.Spec.Name == api.SourceSplitsState {
					r.splits, r.hasSplits = st.Items, true
				}
			}
			if mine != nil && len(mine.GetSourcePosition()) > 0 {
				r.position, r.hasPos = mine.GetSourcePosition(), true
			}
		}
		for _, st := range states {
			if len(st.GetInFlight()) == 0 {
				continue
			}
			if rescaled {
				err = t.readInFlightRescaled(ctx, r, vi, st, i == 0, i == len(t.vertices)-1)
			} else {
				err = t.readInFlight(ctx, r, vi, st.GetInFlight(), i == 0, i == len(t.vertices)-1)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// redistributeSource computes a source subtask's operator state after a
// rescale: the source splits (api.SourceSplitsState) of every old subtask
// are concatenated in subtask order, divided when they are fewer than the
// subtasks and the source is an api.SplitDivider, and assigned round robin
// (api.AssignSplits); the source's other operator states are
// redistributed as usual.
func (t *task) redistributeSource(ctx context.Context, r *restoreState, vi *vertexInfo, open snapshot.OpenFunc, old [][]*checkpointv1.OperatorStateHandle) ([]statebackend.OperatorState, error) {
	all := make([][]statebackend.OperatorState, len(old))
	var splits [][]byte
	var spec api.OperatorStateSpec
	for i, hs := range old {
		sts, err := snapshot.ReadOperatorState(ctx, open, hs)
		if err != nil {
			return nil, r.errorf("operator uid %q: old subtask %d: %w", vi.uid(), i, err)
		}
		rest := sts[:0]
		for _, st := range sts {
			if st.Spec.Name == api.SourceSplitsState {
				splits = append(splits, st.Items...)
				spec, r.hasSplits = st.Spec, true
				continue
			}
			rest = append(rest, st)
		}
		all[i] = rest
	}
	shares, err := statebackend.Redistribute(all, t.parallelism)
	if err != nil {
		return nil, r.errorf("operator uid %q: %w", vi.uid(), err)
	}
	mine := shares[t.subtask]
	if !r.hasSplits {
		return mine, nil
	}
	if d, ok := t.source.(api.SplitDivider); ok && len(splits) < t.parallelism {
		if splits, err = t.divideSplits(d, splits); err != nil {
			return nil, r.errorf("%w", err)
		}
	}
	r.splits = api.AssignSplits(splits, t.subtask, t.parallelism)
	return append(mine, statebackend.OperatorState{Spec: spec, Items: r.splits}), nil
}

func (t *task) divideSplits(d api.SplitDivider, splits [][]byte) (out [][]byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: divide %d splits for parallelism %d: panic: %v", t.opName(t.srcVI), len(splits), t.parallelism, p)
		}
	}()
	out, err = d.DivideSplits(splits, t.parallelism)
	if err != nil {
		return nil, fmt.Errorf("%s: divide %d splits for parallelism %d: %w", t.opName(t.srcVI), len(splits), t.parallelism, err)
	}
	return out, nil
}

// rescaled reports whether the operator's parallelism differs from the
// checkpoint's. restoreFor gives the state of the same subtask index when it
// did not change, else every old subtask's; one state is ambiguous only
// when the old parallelism may have been 1, which the metadata answers.
func (t *task) rescaled(ctx context.Context, r *restoreState, location string, vi *vertexInfo, states []*checkpointv1.SubtaskState) (bool, error) {
	if len(states) != 1 || int(states[0].GetSubtask()) != t.subtask {
		return true, nil
	}
	if t.parallelism == 1 || t.subtask != 0 {
		return false, nil
	}
	md, err := r.store.ReadMetadata(ctx, location)
	if err != nil {
		return false, r.errorf("read metadata: %w", err)
	}
	for _, op := range md.GetOperators() {
		if op.GetUid() == vi.uid() {
			return int(op.GetParallelism()) != t.parallelism, nil
		}
	}
	return false, nil
}

// readInFlightRescaled takes this subtask's share of one old subtask's
// in-flight data after the parallelism changed (unaligned checkpoints
// survive rescaling):
//
//   - input data of a keyed head: the records whose key group this
//     subtask now owns, from every old subtask;
//   - input data of a non-keyed head and output data: every record of old
//     subtask s goes to new subtask s mod parallelism.
//
// Only records are kept: watermarks and stream statuses in the buffers are
// dropped (the restarted upstream sends them again), and the records are
// replayed on channel 0 (channels only matter for watermarks). Output
// records are routed again by finishRestore.
func (t *task) readInFlightRescaled(ctx context.Context, r *restoreState, vi *vertexInfo, st *checkpointv1.SubtaskState, head, tail bool) error {
	mine := int(st.GetSubtask())%t.parallelism == t.subtask
	keyed := head && vi.v.GetKeyBy() != ""
	kgs := keygroup.RangeFor(t.maxPar, t.parallelism, t.subtask)
	for _, h := range st.GetInFlight() {
		ch := int(h.GetChannel())
		switch {
		case ch == outputInFlightChannel && tail:
		case ch >= 0 && head:
		default:
			return r.errorf("operator uid %q: in-flight data file %s for channel %d does not fit the chain (the operator is no longer first or last in its task)", vi.uid(), h.GetFile().GetPath(), ch)
		}
		if !mine && !(keyed && ch >= 0) {
			continue
		}
		p := h.GetFile().GetPath()
		ents, err := r.readInFlightFile(ctx, vi, p)
		if err != nil {
			return err
		}
		var keep func(rec *api.Record) bool
		if keyed && ch >= 0 {
			keep = func(rec *api.Record) bool { return kgs.Contains(keygroup.Assign(rec.Key, t.maxPar)) }
		}
		for _, e := range ents {
			buf, err := recordsOnly(e.buf, keep)
			if err != nil {
				return r.errorf("operator uid %q: in-flight data file %s: %w", vi.uid(), p, err)
			}
			if len(buf) == 0 {
				continue
			}
			if ch >= 0 {
				if r.inFlight == nil {
					r.inFlight = map[int][][]byte{}
				}
				r.inFlight[0] = append(r.inFlight[0], buf)
				continue
			}
			if e.output >= len(t.outputs) {
				return r.errorf("operator uid %q: in-flight data file %s: output %d does not exist in this job", vi.uid(), p, e.output)
			}
			if t.outputs[e.output].mode == jobgraphv1.Partitioning_PARTITIONING_BROADCAST {
				return r.errorf("operator uid %q: in-flight data of broadcast output %q cannot be redistributed to parallelism %d: restore the checkpoint with its parallelism, or rescale from an aligned checkpoint or a savepoint", vi.uid(), t.outputs[e.output].part.ID().DownstreamTask, t.parallelism)
			}
			r.outFlight = append(r.outFlight, inFlightEntry{output: e.output, sub: -1, buf: buf})
		}
	}
	return nil
}

// recordsOnly returns a buffer of the records of buf that keep accepts
// (all when keep is nil), without its other frames; nil when none is left.
func recordsOnly(buf []byte, keep func(*api.Record) bool) ([]byte, error) {
	var rd frameReader
	var w frameWriter
	var rec api.Record
	rd.reset(buf)
	w.reset(nil)
	for {
		kind, _, _, err := rd.next(&rec)
		if err != nil {
			return nil, err
		}
		if kind == evNone {
			return w.buf, nil
		}
		if kind == evRecord && (keep == nil || keep(&rec)) {
			w.appendRecord(&rec)
		}
	}
}

// readInFlightFile reads and decodes one in-flight data file of vi.
func (r *restoreState) readInFlightFile(ctx context.Context, vi *vertexInfo, p string) ([]inFlightEntry, error) {
	data, err := r.store.ReadFile(ctx, p)
	if err != nil {
		return nil, r.errorf("operator uid %q: in-flight data: %w", vi.uid(), err)
	}
	ents, err := decodeInFlightFile(data)
	if err != nil {
		return nil, r.errorf("operator uid %q: in-flight data file %s: %w", vi.uid(), p, err)
	}
	return ents, nil
}

func (t *task) readInFlight(ctx context.Context, r *restoreState, vi *vertexInfo, hs []*checkpointv1.InFlightHandle, head, tail bool) error {
	for _, h := range hs {
		p := h.GetFile().GetPath()
		ents, err := r.readInFlightFile(ctx, vi, p)
		if err != nil {
			return err
		}
		ch := int(h.GetChannel())
		switch {
		case ch == outputInFlightChannel && tail:
			for i, e := range ents {
				if e.output >= len(t.outputs) {
					return r.errorf("operator uid %q: in-flight data file %s: output %d does not exist in this job", vi.uid(), p, e.output)
				}
				o := t.outputs[e.output]
				if e.sub >= len(o.subs) {
					// The downstream was rescaled.
					if o.mode == jobgraphv1.Partitioning_PARTITIONING_BROADCAST {
						return r.errorf("operator uid %q: in-flight data of broadcast output %q subpartition %d: the downstream's parallelism changed: restore the checkpoint with its parallelism, or rescale from an aligned checkpoint or a savepoint", vi.uid(), o.part.ID().DownstreamTask, e.sub)
					}
					ents[i].sub = -1
				}
			}
			r.outFlight = append(r.outFlight, ents...)
		case ch >= 0 && head:
			if r.inFlight == nil {
				r.inFlight = map[int][][]byte{}
			}
			for _, e := range ents {
				r.inFlight[ch] = append(r.inFlight[ch], e.buf)
			}
		default:
			return r.errorf("operator uid %q: in-flight data file %s for channel %d does not fit the chain (the operator is no longer first or last in its task)", vi.uid(), p, ch)
		}
	}
	return nil
}

// restoreKeyedBackend opens an operator's keyed backend of kind f, as cfg
// says, filled from the restored handles of its key groups (nil, nil when
// there are none).
func (t *task) restoreKeyedBackend(st *operatorState, f statebackend.Factory, cfg statebackend.Config) (statebackend.Backend, error) {
	r := t.restore
	if r == nil || r.store == nil || len(r.keyed[st.vi]) == 0 {
		return nil, nil
	}
	workDir := filepath.Join(t.env.DataDir, "restore", url.PathEscape(st.UID()))
	be, native, err := snapshot.RestoreBackend(t.ctx, f, cfg, r.store, r.keyed[st.vi], workDir)
	if err != nil {
		return nil, r.errorf("operator uid %q: keyed state: %w", st.UID(), err)
	}
	if native != nil {
		t.ck.restoredKeyed[st] = native
	}
	st.backendType, st.dir = f.Name(), cfg.Dir
	return be, nil
}

// finishRestore runs after the operators opened: the source rewinds, the
// output in-flight data is emitted first, and CheckpointedFunctions learn
// whether they were restored.
func (t *task) finishRestore() error {
	r := t.restore
	if r != nil && t.source != nil {
		if err := t.rewindSource(r); err != nil {
			return r.errorf("%w", err)
		}
	}
	if r != nil {
		for _, e := range r.outFlight {
			o := t.outputs[e.output]
			if e.sub < 0 || o.mode == jobgraphv1.Partitioning_PARTITIONING_HASH {
				// Route the records again: after a rescale, or when the
				// downstream's parallelism (and so its key groups) changed.
				if err := t.reroute(o, e.buf); err != nil {
					return r.errorf("replay output in-flight data to %q: %w", o.part.ID().DownstreamTask, err)
				}
				continue
			}
			if err := o.part.EmitEvent(e.sub, e.buf, false, nil); err != nil {
				return r.errorf("replay output in-flight data to %q subpartition %d: %w", o.part.ID().DownstreamTask, e.sub, err)
			}
		}
		r.outFlight = nil
		for _, o := range t.outputs {
			o.flush()
		}
	}
	for _, vi := range t.vertices {
		f, ok := t.userFunction(vi).(api.CheckpointedFunction)
		if !ok {
			continue
		}
		if err := t.initializeState(vi, f, r != nil); err != nil {
			if r != nil {
				return r.errorf("%w", err)
			}
			return err
		}
	}
	return nil
}

// reroute sends the records of an output in-flight buffer through the
// output's partitioning (hash: by the key the record carries).
func (t *task) reroute(o *output, buf []byte) error {
	var rd frameReader
	var rec api.Record
	rd.reset(buf)
	for t.err == nil {
		kind, _, _, err := rd.next(&rec)
		if err != nil {
			return err
		}
		switch kind {
		case evNone:
			return nil
		case evRecord:
			if o.mode == jobgraphv1.Partitioning_PARTITIONING_HASH && len(rec.Key) > 0 {
				o.write(o.subpartitionOf(rec.Key), &rec)
			} else {
				o.Collect(rec)
			}
		}
	}
	return t.err
}

// rewindSource hands a restored source its splits (api.SplitSource) or
// its position.
func (t *task) rewindSource(r *restoreState) error {
	ss, isSplit := t.source.(api.SplitSource)
	switch {
	case r.hasSplits && isSplit:
		return t.restoreSplits(ss, r.splits)
	case r.hasSplits:
		return fmt.Errorf("%s: the snapshot holds source splits (operator state %q) but source type %q does not implement api.SplitSource: start the job with a source type that reads them, or without that snapshot", t.opName(t.srcVI), api.SourceSplitsState, t.srcVI.v.GetType())
	case r.hasPos:
		return t.restoreSource(r.position)
	}
	return nil
}

func (t *task) restoreSplits(ss api.SplitSource, splits [][]byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: restore %d splits: panic: %v", t.opName(t.srcVI), len(splits), p)
		}
	}()
	if err := ss.RestoreSplits(splits); err != nil {
		return fmt.Errorf("%s: restore %d splits: %w", t.opName(t.srcVI), len(splits), err)
	}
	return nil
}

func (t *task) restoreSource(pos []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: restore position: panic: %v", t.opName(t.srcVI), p)
		}
	}()
	if err := t.source.Restore(pos); err != nil {
		return fmt.Errorf("%s: restore position: %w", t.opName(t.srcVI), err)
	}
	return nil
}

func (t *task) initializeState(vi *vertexInfo, f api.CheckpointedFunction, restored bool) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: initialize state: panic: %v", t.opName(vi), p)
		}
	}()
	if err := f.InitializeState(restored); err != nil {
		return fmt.Errorf("%s: initialize state: %w", t.opName(vi), err)
	}
	return nil
}

// replayInFlight processes the restored input in-flight data before the
// task reads its inputs.
func (t *task) replayInFlight() {
	r := t.restore
	if r == nil || len(r.inFlight) == 0 {
		return
	}
	for ch := range r.inFlight {
		if ch >= len(t.wm) {
			t.fail(r.errorf("in-flight data of input channel %d: the task has %d input channels", ch, len(t.wm)))
			return
		}
	}
	for ch := 0; ch < len(t.wm) && t.err == nil; ch++ {
		for _, buf := range r.inFlight[ch] {
			t.processFrame(ch, buf)
			if t.err != nil {
				return
			}
		}
	}
	r.inFlight = nil
}
