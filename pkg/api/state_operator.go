package api

import (
	"errors"
	"fmt"

	"github.com/flowrt/flow/pkg/api/rawstate"
)

// Operator (non-keyed) state belongs to a subtask, not to a key. It is
// small and kept in memory; it is written to snapshots as a whole and
// redistributed on rescale according to its mode.

// ErrNoOperatorState is returned by OperatorStateStoreOf for a context that
// offers no operator state.
var ErrNoOperatorState = errors.New("context offers no operator state")

// OperatorStateMode says how a list state is redistributed on rescale.
type OperatorStateMode uint8

const (
	// SplitList: the elements of all subtasks are concatenated and split
	// into contiguous parts, one per new subtask.
	SplitList OperatorStateMode = iota + 1
	// UnionList: every new subtask receives all elements of all subtasks.
	UnionList
	// Broadcast: a map that is the same on every subtask; each new subtask
	// receives one copy.
	Broadcast
)

func (m OperatorStateMode) String() string {
	switch m {
	case SplitList:
		return "split-list"
	case UnionList:
		return "union-list"
	case Broadcast:
		return "broadcast"
	}
	return fmt.Sprintf("OperatorStateMode(%d)", uint8(m))
}

// OperatorStateSpec describes an operator state.
type OperatorStateSpec struct {
	Name       string
	Mode       OperatorStateMode
	KeyCodec   string // broadcast maps only
	ValueCodec string
}

// OperatorStateStore is exposed by the Context of every operator (see
// OperatorStateStoreOf).
type OperatorStateStore interface {
	// OperatorList returns the raw list of a SplitList or UnionList state.
	OperatorList(spec OperatorStateSpec) (rawstate.OperatorList, error)
	// BroadcastMap returns the raw map of a Broadcast state.
	BroadcastMap(spec OperatorStateSpec) (rawstate.BroadcastMap, error)
}

// OperatorStateContext is implemented by a Context that offers operator state.
type OperatorStateContext interface {
	OperatorStateStore() OperatorStateStore
}

// OperatorStateStoreOf returns the operator state store of ctx or an error
// wrapping ErrNoOperatorState.
func OperatorStateStoreOf(ctx Context) (OperatorStateStore, error) {
	if o, ok := ctx.(OperatorStateContext); ok && o.OperatorStateStore() != nil {
		return o.OperatorStateStore(), nil
	}
	return nil, fmt.Errorf("operator state for operator %q: %w", ctx.Info().OperatorUID, ErrNoOperatorState)
}

// OperatorListStateDescriptor declares a SplitList or UnionList state.
type OperatorListStateDescriptor[T any] struct {
	Name  string
	Codec Codec[T]
	// Union selects UnionList redistribution (default SplitList).
	Union bool
}

// OperatorListState is a list of T owned by the subtask.
type OperatorListState[T any] struct {
	name  string
	raw   rawstate.OperatorList
	codec Codec[T]
}

// GetOperatorListState declares (or re-obtains) an operator list state.
func GetOperatorListState[T any](s OperatorStateStore, d OperatorListStateDescriptor[T]) (*OperatorListState[T], error) {
	mode := SplitList
	if d.Union {
		mode = UnionList
	}
	if d.Name == "" || d.Codec == nil {
		return nil, fmt.Errorf("declare operator %v state %q: set Name and Codec", mode, d.Name)
	}
	raw, err := s.OperatorList(OperatorStateSpec{Name: d.Name, Mode: mode, ValueCodec: d.Codec.ID()})
	if err != nil {
		return nil, err
	}
	return &OperatorListState[T]{name: d.Name, raw: raw, codec: d.Codec}, nil
}

// Get decodes all elements.
func (s *OperatorListState[T]) Get() ([]T, error) {
	raw := s.raw.Get()
	out := make([]T, 0, len(raw))
	for i, b := range raw {
		v, err := s.codec.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("%w: operator state %q, element %d: %w", ErrStateDecode, s.name, i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Add appends v.
func (s *OperatorListState[T]) Add(v T) error {
	b, err := s.codec.Encode(nil, v)
	if err != nil {
		return fmt.Errorf("encode operator state %q: %w", s.name, err)
	}
	s.raw.Append(b)
	return nil
}

// Update replaces the list.
func (s *OperatorListState[T]) Update(vs []T) error {
	raw := make([][]byte, 0, len(vs))
	for _, v := range vs {
		b, err := s.codec.Encode(nil, v)
		if err != nil {
			return fmt.Errorf("encode operator state %q: %w", s.name, err)
		}
		raw = append(raw, b)
	}
	s.raw.Update(raw)
	return nil
}

// Clear empties the list.
func (s *OperatorListState[T]) Clear() { s.raw.Update(nil) }

// BroadcastStateDescriptor declares a broadcast map state.
type BroadcastStateDescriptor[K, V any] struct {
	Name       string
	KeyCodec   Codec[K]
	ValueCodec Codec[V]
}

// BroadcastState is a map that every subtask holds identically (the
// operator must apply the same updates on every subtask, e.g. from a
// broadcast input).
type BroadcastState[K, V any] struct {
	name string
	raw  rawstate.BroadcastMap
	kc   Codec[K]
	vc   Codec[V]
}

// GetBroadcastState declares (or re-obtains) a broadcast map state.
func GetBroadcastState[K, V any](s OperatorStateStore, d BroadcastStateDescriptor[K, V]) (*BroadcastState[K, V], error) {
	if d.Name == "" || d.KeyCodec == nil || d.ValueCodec == nil {
		return nil, fmt.Errorf("declare broadcast state %q: set Name, KeyCodec and ValueCodec", d.Name)
	}
	raw, err := s.BroadcastMap(OperatorStateSpec{Name: d.Name, Mode: Broadcast, KeyCodec: d.KeyCodec.ID(), ValueCodec: d.ValueCodec.ID()})
	if err != nil {
		return nil, err
	}
	return &BroadcastState[K, V]{name: d.Name, raw: raw, kc: d.KeyCodec, vc: d.ValueCodec}, nil
}

// Get returns the value under k.
func (s *BroadcastState[K, V]) Get(k K) (V, bool, error) {
	var zero V
	kb, err := s.kc.Encode(nil, k)
	if err != nil {
		return zero, false, fmt.Errorf("encode key of broadcast state %q: %w", s.name, err)
	}
	b, ok := s.raw.Get(kb)
	if !ok {
		return zero, false, nil
	}
	v, err := s.vc.Decode(b)
	if err != nil {
		return zero, false, fmt.Errorf("%w: broadcast state %q, map key %x: %w", ErrStateDecode, s.name, kb, err)
	}
	return v, true, nil
}

// Put stores v under k.
func (s *BroadcastState[K, V]) Put(k K, v V) error {
	kb, err := s.kc.Encode(nil, k)
	if err != nil {
		return fmt.Errorf("encode key of broadcast state %q: %w", s.name, err)
	}
	vb, err := s.vc.Encode(nil, v)
	if err != nil {
		return fmt.Errorf("encode value of broadcast state %q: %w", s.name, err)
	}
	s.raw.Put(kb, vb)
	return nil
}

// Remove deletes k.
func (s *BroadcastState[K, V]) Remove(k K) error {
	kb, err := s.kc.Encode(nil, k)
	if err != nil {
		return fmt.Errorf("encode key of broadcast state %q: %w", s.name, err)
	}
	s.raw.Delete(kb)
	return nil
}

// Range calls fn for each entry until it returns false.
func (s *BroadcastState[K, V]) Range(fn func(k K, v V) bool) error {
	var derr error
	s.raw.Range(func(kb, vb []byte) bool {
		k, err := s.kc.Decode(kb)
		if err == nil {
			var v V
			if v, err = s.vc.Decode(vb); err == nil {
				return fn(k, v)
			}
		}
		derr = fmt.Errorf("%w: broadcast state %q, map key %x: %w", ErrStateDecode, s.name, kb, err)
		return false
	})
	return derr
}

// Clear removes all entries.
func (s *BroadcastState[K, V]) Clear() { s.raw.Clear() }
