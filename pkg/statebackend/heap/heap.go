package heap

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"maps"
	"unsafe"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

// New returns an empty heap backend.
func New(opts statebackend.Options) (*statebackend.Engine, error) {
	s := &store{vers: &versions{}}
	e, err := statebackend.NewEngine(s, opts)
	if err != nil {
		return nil, err
	}
	s.start = e.KeyGroups().Start
	s.n = e.KeyGroups().Len()
	return e, nil
}

// Copy-on-write. The store has an epoch, bumped by every View. Each
// table (one state in one key group), cell (one key and namespace), map
// entry and timer set (one key group) records the epoch in which it was
// created or last claimed (ver). A View freezes the current maps: it keeps
// references to them and the store never mutates an object whose ver is
// below the highest epoch of an unreleased view (versions.max); it writes
// to a copy instead and installs the copy in its parent. An object whose
// ver is the current epoch is private to the store and written in place,
// so the write path pays one comparison per level until the next View.

type entry struct {
	v   []byte
	ver uint64
}

type cell struct {
	val     []byte
	entries map[string]*entry
	ver     uint64
}

type table struct {
	m   map[string]*cell
	ver uint64
}

type titem struct {
	k   string
	idx int
}

// tset is the timer index of one key group.
type tset struct {
	m   map[string]*titem
	ver uint64
}

type theap []*titem

func (h theap) Len() int           { return len(h) }
func (h theap) Less(i, j int) bool { return h[i].k < h[j].k }
func (h theap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *theap) Push(x any) {
	it := x.(*titem)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *theap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

type store struct {
	start, n int
	states   [][]*table // [state id][key group - start]
	kbuf     []byte
	timers   [2]theap // per domain, for FirstTimer; never part of a view
	tsets    []*tset  // [key group - start]: the timer index
	epoch    uint64
	vers     *versions
}

func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// shared reports whether an object created or claimed in epoch ver may be
// referenced by an unreleased view.
func (s *store) shared(ver uint64) bool { return s.vers.max.Load() > ver }

func (s *store) kgTables(state uint16, create bool) []*table {
	id := int(state)
	if id >= len(s.states) {
		if !create {
			return nil
		}
		s.states = append(s.states, make([][]*table, id+1-len(s.states))...)
	}
	kgs := s.states[id]
	if kgs == nil && create {
		kgs = make([]*table, s.n)
		s.states[id] = kgs
	}
	return kgs
}

// table returns the table of c for reading (nil when absent).
func (s *store) table(c *statebackend.Cell) *table {
	kgs := s.kgTables(c.State, false)
	if kgs == nil {
		return nil
	}
	return kgs[c.KeyGroup-s.start]
}

// wtable returns the table of c for writing: created if absent, copied
// first if a view holds it.
func (s *store) wtable(c *statebackend.Cell) *table {
	kgs := s.kgTables(c.State, true)
	i := c.KeyGroup - s.start
	t := kgs[i]
	if t == nil {
		t = &table{m: map[string]*cell{}, ver: s.epoch}
		kgs[i] = t
		return t
	}
	if t.ver != s.epoch {
		if s.shared(t.ver) {
			t = &table{m: maps.Clone(t.m), ver: s.epoch}
			kgs[i] = t
		} else {
			t.ver = s.epoch
		}
	}
	return t
}

// wcell returns the cell at s.kbuf of the writable table t for writing:
// created if absent, copied first if a view holds it (the copy keeps the
// value when keep is set, and always the map entries, which are versioned
// themselves).
func (s *store) wcell(t *table, keep bool) *cell {
	cl := t.m[string(s.kbuf)]
	if cl == nil {
		cl = &cell{ver: s.epoch}
		t.m[string(s.kbuf)] = cl
		return cl
	}
	if cl.ver != s.epoch {
		if !s.shared(cl.ver) {
			cl.ver = s.epoch
			return cl
		}
		n := &cell{ver: s.epoch}
		if keep {
			n.val = append([]byte(nil), cl.val...)
		}
		if cl.entries != nil {
			n.entries = maps.Clone(cl.entries)
		}
		t.m[string(s.kbuf)] = n
		return n
	}
	return cl
}

func (s *store) lookup(c *statebackend.Cell) *cell {
	t := s.table(c)
	if t == nil {
		return nil
	}
	s.kbuf = statebackend.AppendCellKey(s.kbuf[:0], c.Key, c.Namespace)
	return t.m[string(s.kbuf)]
}

func (s *store) Get(c *statebackend.Cell) ([]byte, bool, error) {
	cl := s.lookup(c)
	if cl == nil {
		return nil, false, nil
	}
	return cl.val, true, nil
}

func (s *store) Set(c *statebackend.Cell, v []byte) error {
	t := s.wtable(c)
	s.kbuf = statebackend.AppendCellKey(s.kbuf[:0], c.Key, c.Namespace)
	cl := s.wcell(t, false)
	cl.val = append(cl.val[:0], v...)
	return nil
}

func (s *store) Append(c *statebackend.Cell, v []byte) error {
	t := s.wtable(c)
	s.kbuf = statebackend.AppendCellKey(s.kbuf[:0], c.Key, c.Namespace)
	cl := s.wcell(t, true)
	cl.val = append(cl.val, v...)
	return nil
}

func (s *store) Delete(c *statebackend.Cell) error {
	if s.lookup(c) == nil {
		return nil
	}
	delete(s.wtable(c).m, string(s.kbuf))
	return nil
}

func (s *store) GetEntry(c *statebackend.Cell, uk []byte) ([]byte, bool, error) {
	cl := s.lookup(c)
	if cl == nil {
		return nil, false, nil
	}
	e := cl.entries[string(uk)]
	if e == nil {
		return nil, false, nil
	}
	return e.v, true, nil
}

func (s *store) SetEntry(c *statebackend.Cell, uk, v []byte) error {
	t := s.wtable(c)
	s.kbuf = statebackend.AppendCellKey(s.kbuf[:0], c.Key, c.Namespace)
	cl := s.wcell(t, false)
	if cl.entries == nil {
		cl.entries = map[string]*entry{}
	}
	if e := cl.entries[string(uk)]; e != nil && (e.ver == s.epoch || !s.shared(e.ver)) {
		e.ver = s.epoch
		e.v = append(e.v[:0], v...)
		return nil
	}
	cl.entries[string(uk)] = &entry{v: append([]byte(nil), v...), ver: s.epoch}
	return nil
}

func (s *store) DeleteEntry(c *statebackend.Cell, uk []byte) error {
	cl := s.lookup(c)
	if cl == nil {
		return nil
	}
	if _, ok := cl.entries[string(uk)]; !ok {
		if len(cl.entries) == 0 {
			delete(s.wtable(c).m, string(s.kbuf))
		}
		return nil
	}
	t := s.wtable(c)
	cl = s.wcell(t, false)
	delete(cl.entries, string(uk))
	if len(cl.entries) == 0 {
		delete(t.m, string(s.kbuf))
	}
	return nil
}

func (s *store) RangeEntries(c *statebackend.Cell, fn func(uk, v []byte) bool) error {
	cl := s.lookup(c)
	if cl == nil {
		return nil
	}
	for k, e := range cl.entries {
		if !fn(bytesOf(k), e.v) {
			return nil
		}
	}
	return nil
}

func (s *store) DeleteEntries(c *statebackend.Cell) error { return s.Delete(c) }

// scanTable visits the items of one table map. The map is never mutated
// while it is visited from a view; from Scan, fn may mutate the item it
// visits (a write to a frozen table goes to a copy, so the iteration of
// the original is unaffected).
func scanTable(m map[string]*cell, fn func(key, ns, uk, v []byte) error) error {
	for ck, cl := range m {
		key, ns, _, err := statebackend.SplitCellKey(bytesOf(ck))
		if err != nil {
			return err
		}
		if cl.entries == nil {
			if err := fn(key, ns, nil, cl.val); err != nil {
				return err
			}
			continue
		}
		for uk, e := range cl.entries {
			if err := fn(key, ns, bytesOf(uk), e.v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *store) Scan(state uint16, kg int, fn func(key, ns, uk, v []byte) error) error {
	t := s.table(&statebackend.Cell{State: state, KeyGroup: kg})
	if t == nil {
		return nil
	}
	return scanTable(t.m, fn)
}

// timerKeyGroup returns the domain of an encoded timer and the index of its
// key group in s.tsets.
func (s *store) timerSlot(t []byte) (int, int, error) {
	if len(t) < 12 || t[0] > byte(api.ProcessingTime) {
		return 0, 0, fmt.Errorf("timer %x: %w", t, statebackend.ErrCorrupt)
	}
	i := int(binary.BigEndian.Uint16(t[9:])) - s.start
	if i < 0 || i >= s.n {
		return 0, 0, fmt.Errorf("timer %x of key group %d outside [%d, %d]: %w", t, i+s.start, s.start, s.start+s.n-1, statebackend.ErrKeyGroupOutOfRange)
	}
	if s.tsets == nil {
		s.tsets = make([]*tset, s.n)
	}
	return int(t[0]), i, nil
}

// wtset returns the timer index of key-group slot i for writing.
func (s *store) wtset(i int) *tset {
	ts := s.tsets[i]
	if ts == nil {
		ts = &tset{m: map[string]*titem{}, ver: s.epoch}
		s.tsets[i] = ts
		return ts
	}
	if ts.ver != s.epoch {
		if s.shared(ts.ver) {
			ts = &tset{m: maps.Clone(ts.m), ver: s.epoch}
			s.tsets[i] = ts
		} else {
			ts.ver = s.epoch
		}
	}
	return ts
}

func (s *store) AddTimer(t []byte) error {
	d, i, err := s.timerSlot(t)
	if err != nil {
		return err
	}
	if ts := s.tsets[i]; ts != nil && ts.m[string(t)] != nil {
		return nil
	}
	it := &titem{k: string(t)}
	s.wtset(i).m[it.k] = it
	heap.Push(&s.timers[d], it)
	return nil
}

func (s *store) DeleteTimer(t []byte) error {
	d, i, err := s.timerSlot(t)
	if err != nil {
		return err
	}
	ts := s.tsets[i]
	if ts == nil {
		return nil
	}
	it := ts.m[string(t)]
	if it == nil {
		return nil
	}
	heap.Remove(&s.timers[d], it.idx)
	delete(s.wtset(i).m, it.k)
	return nil
}

func (s *store) FirstTimer(d api.TimeDomain) ([]byte, bool, error) {
	if int(d) >= len(s.timers) {
		return nil, false, fmt.Errorf("unknown time domain %v", d)
	}
	h := s.timers[d]
	if len(h) == 0 {
		return nil, false, nil
	}
	return bytesOf(h[0].k), true, nil
}

func scanTimers(sets []map[string]*titem, off, start, end int, fn func(t []byte) error) error {
	for kg := max(start, off); kg <= end && kg-off < len(sets); kg++ {
		for k := range sets[kg-off] {
			if err := fn(bytesOf(k)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *store) ScanTimers(start, end int, fn func(t []byte) error) error {
	for kg := max(start, s.start); kg <= end && kg-s.start < len(s.tsets); kg++ {
		if ts := s.tsets[kg-s.start]; ts != nil {
			for k := range ts.m {
				if err := fn(bytesOf(k)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *store) SaveState(uint16, []byte) error          { return nil }
func (s *store) SavedStates() (map[uint16][]byte, error) { return nil, nil }
func (s *store) Flush() error                            { return nil }

// Close drops the live state; unreleased views keep what they froze until
// they are released.
func (s *store) Close() error {
	s.states, s.tsets, s.timers = nil, nil, [2]theap{}
	return nil
}
