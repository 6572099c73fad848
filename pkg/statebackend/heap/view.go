package heap

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/flowrt/flow/pkg/statebackend"
)

// versions tracks the epochs of unreleased views. The task goroutine adds
// one per View; Release, on any goroutine, removes it. max is read without
// the lock on the write path (only when an object is older than the
// current epoch), and its atomic store on Release orders the view's reads
// before the store's later in-place writes.
type versions struct {
	mu     sync.Mutex
	active []uint64
	max    atomic.Uint64
}

func (v *versions) add(ver uint64) {
	v.mu.Lock()
	v.active = append(v.active, ver)
	if ver > v.max.Load() {
		v.max.Store(ver)
	}
	v.mu.Unlock()
}

func (v *versions) remove(ver uint64) {
	v.mu.Lock()
	if i := slices.Index(v.active, ver); i >= 0 {
		v.active = slices.Delete(v.active, i, i+1)
	}
	var m uint64
	for _, a := range v.active {
		m = max(m, a)
	}
	v.max.Store(m)
	v.mu.Unlock()
}

// view is a frozen, read-only view of the store: the table maps and timer
// sets as of View. The store never mutates them while the view is
// unreleased.
type view struct {
	ver      uint64
	vers     *versions
	start    int
	states   [][]map[string]*cell // [state id][key group - start]; nil: empty
	timers   []map[string]*titem  // [key group - start]
	released atomic.Bool
}

var _ statebackend.ViewStore = (*store)(nil)

// View freezes the current state and timers in O(states × key groups):
// it bumps the epoch and keeps references to the current maps; the store
// copies a table, cell, map entry or timer set on its first write after
// the view instead of mutating it.
func (s *store) View() (statebackend.StoreView, error) {
	s.epoch++
	v := &view{ver: s.epoch, vers: s.vers, start: s.start, states: make([][]map[string]*cell, len(s.states))}
	for id, kgs := range s.states {
		if kgs == nil {
			continue
		}
		ms := make([]map[string]*cell, len(kgs))
		for i, t := range kgs {
			if t != nil && len(t.m) > 0 {
				ms[i] = t.m
			}
		}
		v.states[id] = ms
	}
	if s.tsets != nil {
		v.timers = make([]map[string]*titem, len(s.tsets))
		for i, ts := range s.tsets {
			if ts != nil && len(ts.m) > 0 {
				v.timers[i] = ts.m
			}
		}
	}
	s.vers.add(v.ver)
	return v, nil
}

func (v *view) Scan(state uint16, kg int, fn func(key, ns, uk, v []byte) error) error {
	if v.released.Load() {
		return fmt.Errorf("scan state id %d in key group %d: %w", state, kg, statebackend.ErrViewReleased)
	}
	if int(state) >= len(v.states) || kg < v.start || kg-v.start >= len(v.states[state]) {
		return nil
	}
	return scanTable(v.states[state][kg-v.start], fn)
}

func (v *view) ScanTimers(start, end int, fn func(t []byte) error) error {
	if v.released.Load() {
		return fmt.Errorf("scan timers: %w", statebackend.ErrViewReleased)
	}
	return scanTimers(v.timers, v.start, start, end, fn)
}

// Release unregisters the view: the store may again write in place what
// only this view froze. It is idempotent and may run on any goroutine, but
// not concurrently with Scan or ScanTimers of the same view.
func (v *view) Release() {
	if !v.released.CompareAndSwap(false, true) {
		return
	}
	v.states, v.timers = nil, nil
	v.vers.remove(v.ver)
}
