package statebackend

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/rawstate"
)

// OperatorStore holds the operator (non-keyed) state of one operator in one
// subtask, in memory: split and union lists and broadcast maps. It
// implements api.OperatorStateStore. One goroutine uses it.
type OperatorStore struct {
	lists map[string]*opList
	maps  map[string]*opMap
}

// NewOperatorStore returns an empty store.
func NewOperatorStore() *OperatorStore {
	return &OperatorStore{lists: map[string]*opList{}, maps: map[string]*opMap{}}
}

type opList struct {
	spec  api.OperatorStateSpec
	items [][]byte
}

func (l *opList) Get() [][]byte { return l.items }
func (l *opList) Update(vs [][]byte) {
	l.items = l.items[:0]
	for _, v := range vs {
		l.items = append(l.items, slices.Clone(v))
	}
}
func (l *opList) Append(v []byte) { l.items = append(l.items, slices.Clone(v)) }

type opMap struct {
	spec api.OperatorStateSpec
	m    map[string][]byte
}

func (m *opMap) Get(k []byte) ([]byte, bool) { v, ok := m.m[string(k)]; return v, ok }
func (m *opMap) Put(k, v []byte)             { m.m[string(k)] = slices.Clone(v) }
func (m *opMap) Delete(k []byte)             { delete(m.m, string(k)) }
func (m *opMap) Clear()                      { clear(m.m) }
func (m *opMap) Range(fn func(k, v []byte) bool) {
	for k, v := range m.m {
		if !fn([]byte(k), v) {
			return
		}
	}
}

func (s *OperatorStore) check(spec api.OperatorStateSpec) error {
	if spec.Name == "" {
		return fmt.Errorf("declare operator state: empty name")
	}
	var old api.OperatorStateSpec
	if l, ok := s.lists[spec.Name]; ok {
		old = l.spec
	} else if m, ok := s.maps[spec.Name]; ok {
		old = m.spec
	} else {
		return nil
	}
	if old != spec {
		return fmt.Errorf("declare operator state %q as %v (codecs %q/%q): it exists as %v (codecs %q/%q): %w",
			spec.Name, spec.Mode, spec.KeyCodec, spec.ValueCodec, old.Mode, old.KeyCodec, old.ValueCodec, api.ErrStateConflict)
	}
	return nil
}

// OperatorList implements api.OperatorStateStore.
func (s *OperatorStore) OperatorList(spec api.OperatorStateSpec) (rawstate.OperatorList, error) {
	if spec.Mode != api.SplitList && spec.Mode != api.UnionList {
		return nil, fmt.Errorf("operator list state %q: mode %v is not a list mode", spec.Name, spec.Mode)
	}
	if err := s.check(spec); err != nil {
		return nil, err
	}
	l, ok := s.lists[spec.Name]
	if !ok {
		l = &opList{spec: spec}
		s.lists[spec.Name] = l
	}
	return l, nil
}

// BroadcastMap implements api.OperatorStateStore.
func (s *OperatorStore) BroadcastMap(spec api.OperatorStateSpec) (rawstate.BroadcastMap, error) {
	if spec.Mode != api.Broadcast {
		return nil, fmt.Errorf("broadcast state %q: mode %v is not broadcast", spec.Name, spec.Mode)
	}
	if err := s.check(spec); err != nil {
		return nil, err
	}
	m, ok := s.maps[spec.Name]
	if !ok {
		m = &opMap{spec: spec, m: map[string][]byte{}}
		s.maps[spec.Name] = m
	}
	return m, nil
}

// OperatorState is one operator state in snapshot form: Items for lists,
// Entries (sorted by key) for broadcast maps.
type OperatorState struct {
	Spec    api.OperatorStateSpec
	Items   [][]byte
	Entries [][2][]byte
}

// Snapshot returns a deep copy of all operator states, sorted by name.
func (s *OperatorStore) Snapshot() []OperatorState {
	out := make([]OperatorState, 0, len(s.lists)+len(s.maps))
	for _, l := range s.lists {
		st := OperatorState{Spec: l.spec}
		for _, v := range l.items {
			st.Items = append(st.Items, slices.Clone(v))
		}
		out = append(out, st)
	}
	for _, m := range s.maps {
		st := OperatorState{Spec: m.spec}
		for k, v := range m.m {
			st.Entries = append(st.Entries, [2][]byte{[]byte(k), slices.Clone(v)})
		}
		sort.Slice(st.Entries, func(i, j int) bool { return bytes.Compare(st.Entries[i][0], st.Entries[j][0]) < 0 })
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out
}

// Restore replaces the store's contents with states (one subtask's share,
// as computed by Redistribute). The operator's later declarations must
// match the restored specs.
func (s *OperatorStore) Restore(states []OperatorState) error {
	s.lists, s.maps = map[string]*opList{}, map[string]*opMap{}
	for _, st := range states {
		switch st.Spec.Mode {
		case api.SplitList, api.UnionList:
			l, err := s.OperatorList(st.Spec)
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			l.Update(st.Items)
		case api.Broadcast:
			m, err := s.BroadcastMap(st.Spec)
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			for _, e := range st.Entries {
				m.Put(e[0], e[1])
			}
		default:
			return fmt.Errorf("restore operator state %q: unknown mode %v", st.Spec.Name, st.Spec.Mode)
		}
	}
	return nil
}

// Redistribute computes the operator state of each of n new subtasks from
// the snapshots of the old subtasks (old[i] is subtask i's Snapshot):
//   - SplitList: all elements, in old-subtask order, cut into n contiguous
//     parts of sizes differing by at most one;
//   - UnionList: every new subtask gets all elements;
//   - Broadcast: new subtask i gets a copy of old subtask i mod len(old)'s map.
func Redistribute(old [][]OperatorState, n int) ([][]OperatorState, error) {
	if n < 1 {
		return nil, fmt.Errorf("redistribute operator state to %d subtasks: need at least 1", n)
	}
	type merged struct {
		spec  api.OperatorStateSpec
		items [][]byte
		maps  [][][2][]byte // per old subtask
	}
	byName := map[string]*merged{}
	var names []string
	for _, states := range old {
		for _, st := range states {
			m := byName[st.Spec.Name]
			if m == nil {
				m = &merged{spec: st.Spec}
				byName[st.Spec.Name] = m
				names = append(names, st.Spec.Name)
			} else if m.spec != st.Spec {
				return nil, fmt.Errorf("redistribute operator state %q: subtasks disagree on its spec (%+v vs %+v): %w", st.Spec.Name, m.spec, st.Spec, api.ErrStateConflict)
			}
			m.items = append(m.items, st.Items...)
			m.maps = append(m.maps, st.Entries)
		}
	}
	sort.Strings(names)
	out := make([][]OperatorState, n)
	for i := range out {
		for _, name := range names {
			m := byName[name]
			st := OperatorState{Spec: m.spec}
			switch m.spec.Mode {
			case api.SplitList:
				st.Items = m.items[i*len(m.items)/n : (i+1)*len(m.items)/n]
			case api.UnionList:
				st.Items = m.items
			case api.Broadcast:
				st.Entries = m.maps[i%len(m.maps)]
			}
			out[i] = append(out[i], st)
		}
	}
	return out, nil
}

var _ api.OperatorStateStore = (*OperatorStore)(nil)
