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

// Copy-on-write of timers: the store has an epoch, bumped by every View
// (see cells.go for keyed state). A timer set records the epoch in which
// it was created or last claimed (ver); the store never mutates a set
// whose ver is below the highest epoch of an unreleased view
// (versions.max) and writes to a copy instead.

type titem struct {
	k string
	// o is the timestamp part of k (bytes 1-8, order-preserving): most
	// comparisons of the heap decide on it without comparing strings.
	o   uint64
	idx int
}

// tset is the timer index of one key group.
type tset struct {
	m   map[string]*titem
	ver uint64
}

type theap []*titem

func (h theap) Len() int { return len(h) }
func (h theap) Less(i, j int) bool {
	if a, b := h[i], h[j]; a.o != b.o {
		return a.o < b.o
	}
	return h[i].k < h[j].k
}
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
	states   []*stateTab // [state id]
	kbuf     []byte
	timers   [2]theap // per domain, for FirstTimer; never part of a view
	tsets    []*tset  // [key group - start]: the timer index
	epoch    uint64
	vers     *versions
	scanning bool     // a Scan is walking the live store: do not compact
	last     lastCell // the last cell found (cells.go)
	spares   []*ext   // private buffers of removed cells, for reuse (cells.go)
	mx       storeMetrics
}

func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// shared reports whether an object created or claimed in epoch ver may be
// referenced by an unreleased view.
func (s *store) shared(ver uint64) bool { return s.vers.max.Load() > ver }

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
	it := &titem{k: string(t), o: binary.BigEndian.Uint64(t[1:9])}
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
	s.states, s.tsets, s.timers, s.last, s.spares = nil, nil, [2]theap{}, lastCell{}, nil
	s.mx.held = 0
	return nil
}
