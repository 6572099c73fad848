package heap

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

// New returns an empty heap backend.
func New(opts statebackend.Options) (*statebackend.Engine, error) {
	s := &store{}
	e, err := statebackend.NewEngine(s, opts)
	if err != nil {
		return nil, err
	}
	s.start = e.KeyGroups().Start
	s.n = e.KeyGroups().Len()
	return e, nil
}

type entry struct{ v []byte }

type cell struct {
	val     []byte
	entries map[string]*entry
}

type table map[string]*cell

type titem struct {
	k   string
	idx int
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
	states   [][]table // [state id][key group - start]
	kbuf     []byte
	timers   [2]theap
	tindex   map[string]*titem
}

func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (s *store) table(c *statebackend.Cell, create bool) table {
	id := int(c.State)
	if id >= len(s.states) {
		if !create {
			return nil
		}
		s.states = append(s.states, make([][]table, id+1-len(s.states))...)
	}
	kgs := s.states[id]
	if kgs == nil {
		if !create {
			return nil
		}
		kgs = make([]table, s.n)
		s.states[id] = kgs
	}
	t := kgs[c.KeyGroup-s.start]
	if t == nil && create {
		t = table{}
		kgs[c.KeyGroup-s.start] = t
	}
	return t
}

func (s *store) lookup(c *statebackend.Cell) *cell {
	t := s.table(c, false)
	if t == nil {
		return nil
	}
	s.kbuf = statebackend.AppendCellKey(s.kbuf[:0], c.Key, c.Namespace)
	return t[string(s.kbuf)]
}

func (s *store) lookupOrCreate(c *statebackend.Cell) *cell {
	t := s.table(c, true)
	s.kbuf = statebackend.AppendCellKey(s.kbuf[:0], c.Key, c.Namespace)
	cl := t[string(s.kbuf)]
	if cl == nil {
		cl = &cell{}
		t[string(s.kbuf)] = cl
	}
	return cl
}

func (s *store) Get(c *statebackend.Cell) ([]byte, bool, error) {
	cl := s.lookup(c)
	if cl == nil {
		return nil, false, nil
	}
	return cl.val, true, nil
}

func (s *store) Set(c *statebackend.Cell, v []byte) error {
	cl := s.lookupOrCreate(c)
	cl.val = append(cl.val[:0], v...)
	return nil
}

func (s *store) Append(c *statebackend.Cell, v []byte) error {
	cl := s.lookupOrCreate(c)
	cl.val = append(cl.val, v...)
	return nil
}

func (s *store) Delete(c *statebackend.Cell) error {
	t := s.table(c, false)
	if t == nil {
		return nil
	}
	s.kbuf = statebackend.AppendCellKey(s.kbuf[:0], c.Key, c.Namespace)
	delete(t, string(s.kbuf))
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
	cl := s.lookupOrCreate(c)
	if cl.entries == nil {
		cl.entries = map[string]*entry{}
	}
	if e := cl.entries[string(uk)]; e != nil {
		e.v = append(e.v[:0], v...)
		return nil
	}
	cl.entries[string(uk)] = &entry{v: append([]byte(nil), v...)}
	return nil
}

func (s *store) DeleteEntry(c *statebackend.Cell, uk []byte) error {
	t := s.table(c, false)
	if t == nil {
		return nil
	}
	s.kbuf = statebackend.AppendCellKey(s.kbuf[:0], c.Key, c.Namespace)
	cl := t[string(s.kbuf)]
	if cl == nil {
		return nil
	}
	delete(cl.entries, string(uk))
	if len(cl.entries) == 0 {
		delete(t, string(s.kbuf))
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

func (s *store) Scan(state uint16, kg int, fn func(key, ns, uk, v []byte) error) error {
	t := s.table(&statebackend.Cell{State: state, KeyGroup: kg}, false)
	for ck, cl := range t {
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

func domainOf(t []byte) (int, error) {
	if len(t) == 0 || t[0] > byte(api.ProcessingTime) {
		return 0, fmt.Errorf("timer %x: %w", t, statebackend.ErrCorrupt)
	}
	return int(t[0]), nil
}

func (s *store) AddTimer(t []byte) error {
	d, err := domainOf(t)
	if err != nil {
		return err
	}
	if s.tindex == nil {
		s.tindex = map[string]*titem{}
	}
	if s.tindex[string(t)] != nil {
		return nil
	}
	it := &titem{k: string(t)}
	s.tindex[it.k] = it
	heap.Push(&s.timers[d], it)
	return nil
}

func (s *store) DeleteTimer(t []byte) error {
	d, err := domainOf(t)
	if err != nil {
		return err
	}
	it := s.tindex[string(t)]
	if it == nil {
		return nil
	}
	heap.Remove(&s.timers[d], it.idx)
	delete(s.tindex, it.k)
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

func (s *store) ScanTimers(start, end int, fn func(t []byte) error) error {
	for k := range s.tindex {
		kg := int(binary.BigEndian.Uint16(bytesOf(k)[9:]))
		if kg < start || kg > end {
			continue
		}
		if err := fn(bytesOf(k)); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) SaveState(uint16, []byte) error          { return nil }
func (s *store) SavedStates() (map[uint16][]byte, error) { return nil, nil }
func (s *store) Flush() error                            { return nil }

func (s *store) Close() error {
	s.states, s.tindex, s.timers = nil, nil, [2]theap{}
	return nil
}
