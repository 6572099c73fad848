package snapshot

import (
	"context"
	"fmt"
	"slices"

	"github.com/flowrt/flow/pkg/statebackend"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// Operator is the state of one operator in one subtask: any of its parts
// may be nil.
type Operator struct {
	Subtask int
	// Keyed snapshots the operator's keyed backend (keyed operators).
	Keyed *Keyed
	// OperatorState is the operator's non-keyed state.
	OperatorState *statebackend.OperatorStore
	// SourcePosition is the source's opaque position (sources only); it is
	// copied by Sync.
	SourcePosition []byte
}

// Pending is the synchronous part of one operator's snapshot in one
// subtask. Exactly one of Async and Discard must be called.
type Pending struct {
	id      int64
	subtask int
	keyed   *KeyedPending
	ops     []statebackend.OperatorState
	source  []byte
}

// Sync takes the synchronous part of snapshot id of op on the task
// goroutine: a consistent view of keyed state (Keyed.Sync), a deep copy of
// operator state and of the source position. Processing may continue as
// soon as it returns.
func Sync(id int64, mode Mode, op Operator) (*Pending, error) {
	p := &Pending{id: id, subtask: op.Subtask, source: slices.Clone(op.SourcePosition)}
	if op.OperatorState != nil {
		p.ops = op.OperatorState.Snapshot()
	}
	if op.Keyed != nil {
		kp, err := op.Keyed.Sync(id, mode)
		if err != nil {
			return nil, fmt.Errorf("subtask %d: %w", op.Subtask, err)
		}
		p.keyed = kp
	}
	return p, nil
}

// Discard releases a snapshot that will not be written.
func (p *Pending) Discard() error {
	if p.keyed != nil {
		return p.keyed.Discard()
	}
	return nil
}

// Async writes the snapshot to t, off the task goroutine, and returns the
// subtask's state for the checkpoint acknowledgement. state_size is the
// full size of the snapshot, uploaded_size the bytes written for it.
func (p *Pending) Async(ctx context.Context, t Target) (*checkpointv1.SubtaskState, error) {
	if err := t.validate(); err != nil {
		_ = p.Discard()
		return nil, err
	}
	st := &checkpointv1.SubtaskState{Subtask: int32(p.subtask), SourcePosition: p.source}
	if p.keyed != nil {
		res, err := p.keyed.Async(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("subtask %d: %w", p.subtask, err)
		}
		st.Keyed = []*checkpointv1.KeyedStateHandle{res.Handle}
		st.StateSize += res.StateSize
		st.UploadedSize += res.UploadedSize
	}
	if len(p.ops) > 0 {
		hs, n, err := WriteOperatorState(ctx, t, p.ops)
		if err != nil {
			return nil, fmt.Errorf("subtask %d: %w", p.subtask, err)
		}
		st.OperatorState = hs
		st.StateSize += n
		st.UploadedSize += n
	}
	st.StateSize += int64(len(p.source))
	return st, nil
}
