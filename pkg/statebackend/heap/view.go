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

// view is a frozen, read-only view of the store: the chunk lists of every
// state and the timer sets as of View.
type view struct {
	ver      uint64
	vers     *versions
	start, n int
	states   []*frozen           // [state id]; nil: none
	timers   []map[string]*titem // [key group - start]
	released atomic.Bool
}

// frozen is one state as of a View.
type frozen struct {
	chunks []*chunk
	next   int32
	once   sync.Once
	byKG   [][]int32 // [key group - start] slot numbers, built by the first Scan
}

var _ statebackend.ViewStore = (*store)(nil)

// View freezes the current state and timers in time proportional to the
// number of chunks (keys / 128) and key groups: it bumps the epoch and
// copies the chunk pointers of every state; the store copies a chunk,
// out-of-line value, entry map, map entry or timer set on its first write
// after the view instead of mutating it.
func (s *store) View() (statebackend.StoreView, error) {
	s.epoch++
	v := &view{ver: s.epoch, vers: s.vers, start: s.start, n: s.n, states: make([]*frozen, len(s.states))}
	for id, st := range s.states {
		if st != nil && st.next > 0 {
			v.states[id] = &frozen{chunks: append([]*chunk(nil), st.chunks...), next: st.next}
		}
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

// group sorts the frozen slot numbers by key group, once.
func (f *frozen) group(n int) [][]int32 {
	f.once.Do(func() {
		counts := make([]int32, n)
		at := func(i int32) *slot { return &f.chunks[i>>chunkShift][i&chunkMask] }
		for i := int32(0); i < f.next; i++ {
			if sl := at(i); sl.key != "" {
				counts[sl.kg]++
			}
		}
		all := make([]int32, 0, f.next)
		f.byKG = make([][]int32, n)
		for kg, c := range counts {
			f.byKG[kg] = all[len(all) : len(all) : len(all)+int(c)]
			all = all[:len(all)+int(c)]
		}
		for i := int32(0); i < f.next; i++ {
			if sl := at(i); sl.key != "" {
				f.byKG[sl.kg] = append(f.byKG[sl.kg], i)
			}
		}
	})
	return f.byKG
}

func (v *view) Scan(state uint16, kg int, fn func(key, ns, uk, v []byte) error) error {
	if v.released.Load() {
		return fmt.Errorf("scan state id %d in key group %d: %w", state, kg, statebackend.ErrViewReleased)
	}
	if int(state) >= len(v.states) || v.states[state] == nil || kg < v.start || kg-v.start >= v.n {
		return nil
	}
	f := v.states[state]
	for _, i := range f.group(v.n)[kg-v.start] {
		sl := &f.chunks[i>>chunkShift][i&chunkMask]
		var es map[string]*entry
		if sl.ext != nil {
			es = sl.ext.entries
		}
		if err := visit(sl.key, sl.value(), es, fn); err != nil {
			return err
		}
	}
	return nil
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
