package runtime

import (
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/statebackend"
)

// This file holds the synchronous part of a checkpoint: functions
// pre-commit, keyed and operator state and the source's splits or position
// are captured on the task goroutine.

// ---- snapshots ----

// syncSnapshot takes the synchronous part of pc's snapshot for every
// operator of the chain: functions pre-commit (CheckpointedFunction), then
// keyed state, operator state and the source position are captured.
func (t *task) syncSnapshot(pc *pendingCheckpoint) {
	if pc.synced || pc.failed != nil {
		return
	}
	start := time.Now()
	pc.synced = true
	mode := snapshot.Checkpoint
	if pc.flags&barrierSavepoint != 0 {
		mode = snapshot.Savepoint
	}
	states := t.operatorStates()
	for i, st := range states {
		vi := st.vi
		if err := t.snapshotFunction(vi, pc.id); err != nil {
			pc.failed = err
			break
		}
		op := snapshot.Operator{Subtask: t.subtask, OperatorState: st.ops}
		if vi == t.srcVI {
			if ss, ok := t.source.(api.SplitSource); ok {
				// The splits go into the source's operator state, which
				// snapshot.Sync copies below.
				if err := t.snapshotSplits(ss, st); err != nil {
					pc.failed = err
					break
				}
			} else {
				pos, err := t.sourcePosition()
				if err != nil {
					pc.failed = err
					break
				}
				op.SourcePosition = pos
			}
		}
		if st.keyed != nil {
			k, err := t.keyedSnapshotter(st)
			if err != nil {
				pc.failed = fmt.Errorf("%s: %w", t.opName(vi), err)
				break
			}
			op.Keyed = k
		}
		p, err := snapshot.Sync(pc.id, mode, op)
		if err != nil {
			pc.failed = fmt.Errorf("%s: snapshot %d: %w", t.opName(vi), pc.id, err)
			break
		}
		pc.ops = append(pc.ops, pendingOp{uid: st.UID(), p: p, head: i == 0, tail: i == len(states)-1})
	}
	pc.syncDur = time.Since(start)
	if pc.failed != nil {
		t.log.Warn("checkpoint snapshot failed", "checkpoint", pc.id, "err", pc.failed)
		pc.discard()
	}
}

// snapshotFunction calls SnapshotState of an operator or sink that
// implements api.CheckpointedFunction.
func (t *task) snapshotFunction(vi *vertexInfo, id int64) (err error) {
	f, ok := t.userFunction(vi).(api.CheckpointedFunction)
	if !ok {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: snapshot state for checkpoint %d: panic: %v", t.opName(vi), id, p)
		}
	}()
	if err := f.SnapshotState(id); err != nil {
		return fmt.Errorf("%s: snapshot state for checkpoint %d: %w", t.opName(vi), id, err)
	}
	return nil
}

// splitsSpec is the operator state holding a SplitSource's splits.
var splitsSpec = api.OperatorStateSpec{Name: api.SourceSplitsState, Mode: api.SplitList, ValueCodec: api.BytesCodec().ID()}

// snapshotSplits stores the splits of a SplitSource in its operator state.
func (t *task) snapshotSplits(ss api.SplitSource, st *operatorState) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: splits: panic: %v", t.opName(t.srcVI), p)
		}
	}()
	splits, err := ss.Splits()
	if err != nil {
		return fmt.Errorf("%s: splits: %w", t.opName(t.srcVI), err)
	}
	l, err := st.ops.OperatorList(splitsSpec)
	if err != nil {
		return fmt.Errorf("%s: store splits: %w", t.opName(t.srcVI), err)
	}
	l.Update(splits)
	return nil
}

func (t *task) sourcePosition() (pos []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: position: panic: %v", t.opName(t.srcVI), p)
		}
	}()
	pos, err = t.source.Position()
	if err != nil {
		return nil, fmt.Errorf("%s: position: %w", t.opName(t.srcVI), err)
	}
	return pos, nil
}

// userFunction returns the source, operator or sink of a vertex of the
// chain.
func (t *task) userFunction(vi *vertexInfo) any {
	if vi == t.srcVI {
		return t.source
	}
	if t.sink != nil && vi == t.sink.vi {
		return t.sink.sink
	}
	for _, l := range t.links {
		if l.vi == vi {
			return l.op
		}
	}
	return nil
}

func (t *task) keyedSnapshotter(st *operatorState) (*snapshot.Keyed, error) {
	if k := t.ck.keyed[st]; k != nil {
		return k, nil
	}
	opts := snapshot.KeyedOptions{Restored: t.ck.restoredKeyed[st], Native: t.backendConfig(statebackend.Options{})}
	if st.dir != "" {
		// Native checkpoints (hard links) go next to the backend's files.
		opts.WorkDir = filepath.Join(t.env.DataDir, "snapshots", url.PathEscape(st.UID()))
	}
	k, err := snapshot.NewKeyed(st.keyed, opts)
	if err != nil {
		return nil, err
	}
	t.ck.keyed[st] = k
	return k, nil
}

func (pc *pendingCheckpoint) discard() {
	for _, op := range pc.ops {
		_ = op.p.Discard()
	}
	pc.ops = nil
	pc.inFlight, pc.outFlight = nil, nil
}

// failCheckpoint declines a checkpoint the task could not take and sends a
// cancellation marker downstream.
func (t *task) failCheckpoint(pc *pendingCheckpoint, reason string) {
	pc.declined = true
	t.decline(pc.id, reason)
	pc.discard()
	delete(t.ck.pending, pc.id)
	t.forwardCancel(pc.id)
}
