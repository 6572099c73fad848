package heap

import (
	"maps"

	"github.com/flowrt/flow/pkg/statebackend"
)

// Keyed state and copy-on-write.
//
// Each state keeps its cells (one key and namespace) in slots of 64 bytes,
// numbered in insertion order and stored in chunks of chunkLen slots, with
// values of up to inlineCap bytes inside the slot. A map per key group
// indexes the slots by cell key; only the store reads it.
//
// The store has an epoch, bumped by every View. A chunk records the epoch
// in which it was created or last claimed; so does a slot for what it
// points to (an out-of-line value or map entries), and so does each map
// entry. A View copies the list of chunk pointers of every state (not the
// chunks) and the store never mutates a chunk, out-of-line value, entry
// map or entry whose epoch is below the highest epoch of an unreleased
// view (versions.max): the first write to such a chunk copies the chunk
// (chunkLen slots, one allocation), and later writes to it are in place.
// Objects of the current epoch are private to the store and written in
// place: the write path pays one comparison per level until the next View.
//
// Why chunks in insertion order rather than one object per key: copying
// one object per written key after every View cost an allocation per key,
// and scattered the live cells over memory freed by earlier copies, which
// every later update paid for in cache misses. A chunk copy keeps its
// slots together and in the order the keys were created.

const (
	chunkShift = 7
	chunkLen   = 1 << chunkShift
	chunkMask  = chunkLen - 1

	// inlineCap is the largest value stored inside its slot.
	inlineCap = 29
	// outOfLine in slot.n: the value is in slot.ext.val.
	outOfLine = 0xff

	// compactMin is the number of free slots below which a state is never
	// compacted.
	compactMin = 1024
)

type entry struct {
	v   []byte
	ver uint64
}

// ext holds what does not fit in a slot: a large value or map entries.
type ext struct {
	val     []byte
	entries map[string]*entry // map-state entries, versioned themselves
	nbytes  int64             // bytes of the entries' keys and values (metrics.go)
}

// slot is one cell: 64 bytes.
type slot struct {
	key string // AppendCellKey(key, ns); "" for a free slot
	ext *ext
	ver uint64 // epoch in which ext (and what it points to) was created or claimed
	kg  uint16 // key group - store start
	n   uint8  // inline value length, or outOfLine
	inl [inlineCap]byte
}

func (sl *slot) value() []byte {
	if sl.n == outOfLine {
		return sl.ext.val
	}
	return sl.inl[:sl.n:sl.n]
}

func (sl *slot) entries() map[string]*entry {
	if sl.ext == nil {
		return nil
	}
	return sl.ext.entries
}

type chunk [chunkLen]slot

// stateTab holds one state.
type stateTab struct {
	chunks []*chunk
	vers   []uint64 // [chunk] epoch in which the chunk was created or claimed
	next   int32    // slots ever used: the next fresh slot number
	free   []int32
	idx    []map[string]int32 // [key group - start] cell key -> slot number
}

func (st *stateTab) at(i int32) *slot { return &st.chunks[i>>chunkShift][i&chunkMask] }

// wat returns slot i for writing: its chunk is copied first if a view
// holds it.
func (s *store) wat(st *stateTab, i int32) *slot {
	ci := i >> chunkShift
	if st.vers[ci] != s.epoch {
		if s.shared(st.vers[ci]) {
			c := new(chunk)
			*c = *st.chunks[ci]
			st.chunks[ci] = c
		}
		st.vers[ci] = s.epoch
	}
	return &st.chunks[ci][i&chunkMask]
}

func (s *store) stateTab(id uint16, create bool) *stateTab {
	if int(id) >= len(s.states) {
		if !create {
			return nil
		}
		s.states = append(s.states, make([]*stateTab, int(id)+1-len(s.states))...)
	}
	st := s.states[id]
	if st == nil && create {
		st = &stateTab{idx: make([]map[string]int32, s.n)}
		s.states[id] = st
	}
	return st
}

// find returns the slot number of c, or -1; it leaves the cell key in
// s.kbuf.
func (s *store) find(c *statebackend.Cell) (*stateTab, int32) {
	st := s.stateTab(c.State, false)
	if st == nil {
		return nil, -1
	}
	m := st.idx[c.KeyGroup-s.start]
	if m == nil {
		return st, -1
	}
	s.kbuf = statebackend.AppendCellKey(s.kbuf[:0], c.Key, c.Namespace)
	return st, s.slotOf(st, m, c.KeyGroup)
}

// slotOf returns the slot number of the cell key in s.kbuf from the key
// group's index m, or -1.
func (s *store) slotOf(st *stateTab, m map[string]int32, kg int) int32 {
	if i := s.recall(st, kg); i >= 0 {
		return i
	}
	if i, ok := m[string(s.kbuf)]; ok {
		s.remember(st, kg, i)
		return i
	}
	return -1
}

// lastCell remembers the slot of the last cell found, so that the usual
// read-modify-write of one key (a Get, then a Set) looks it up once.
type lastCell struct {
	st   *stateTab // nil: nothing remembered
	kg   int
	key  []byte
	slot int32
}

// recall returns the remembered slot number of the cell key in s.kbuf, or
// -1.
func (s *store) recall(st *stateTab, kg int) int32 {
	if l := &s.last; l.st == st && l.kg == kg && string(l.key) == string(s.kbuf) {
		return l.slot
	}
	return -1
}

func (s *store) remember(st *stateTab, kg int, i int32) {
	s.last.st, s.last.kg, s.last.slot = st, kg, i
	s.last.key = append(s.last.key[:0], s.kbuf...)
}

// lookup returns the slot of c for reading, or nil.
func (s *store) lookup(c *statebackend.Cell) *slot {
	st, i := s.find(c)
	if i < 0 {
		return nil
	}
	return st.at(i)
}

// wslot returns the slot of c for writing, inserted if absent.
func (s *store) wslot(c *statebackend.Cell) *slot {
	st := s.stateTab(c.State, true)
	kg := c.KeyGroup - s.start
	m := st.idx[kg]
	if m == nil {
		m = map[string]int32{}
		st.idx[kg] = m
	}
	s.kbuf = statebackend.AppendCellKey(s.kbuf[:0], c.Key, c.Namespace)
	if i := s.slotOf(st, m, c.KeyGroup); i >= 0 {
		return s.wat(st, i)
	}
	var i int32
	if n := len(st.free); n > 0 {
		i = st.free[n-1]
		st.free = st.free[:n-1]
	} else {
		i = st.next
		st.next++
		if int(i>>chunkShift) == len(st.chunks) {
			st.chunks = append(st.chunks, new(chunk))
			st.vers = append(st.vers, s.epoch)
		}
	}
	k := string(s.kbuf)
	m[k] = i
	s.remember(st, c.KeyGroup, i)
	sl := s.wat(st, i)
	*sl = slot{key: k, kg: uint16(kg), ver: s.epoch}
	s.mx.held += int64(len(k))
	return sl
}

// remove frees slot i (of the cell key in s.kbuf).
func (s *store) remove(st *stateTab, i int32) {
	s.last.st = nil
	sl := s.wat(st, i)
	s.mx.held -= int64(len(sl.key)) + outOfLineBytes(sl) + entryBytes(sl)
	delete(st.idx[sl.kg], sl.key)
	if sl.n == outOfLine && (sl.ver == s.epoch || !s.shared(sl.ver)) {
		s.putSpare(sl.ext)
	}
	*sl = slot{}
	st.free = append(st.free, i)
	if len(st.free) > compactMin && len(st.free) > int(st.next)/2 && !s.scanning {
		s.compact(st)
	}
}

// compact moves the live slots of a state into new chunks, in their
// order, and drops the free ones. The old chunks are left to the views
// that hold them.
func (s *store) compact(st *stateTab) {
	live := st.next - int32(len(st.free))
	nc := int((live + chunkMask) >> chunkShift)
	chunks := make([]*chunk, nc)
	vers := make([]uint64, nc)
	for j := range chunks {
		chunks[j], vers[j] = new(chunk), s.epoch
	}
	var n int32
	for i := int32(0); i < st.next; i++ {
		sl := st.at(i)
		if sl.key == "" {
			continue
		}
		chunks[n>>chunkShift][n&chunkMask] = *sl
		st.idx[sl.kg][sl.key] = n
		n++
	}
	st.chunks, st.vers, st.next, st.free = chunks, vers, n, nil
}

// setValue stores v as the slot's value, in place when the slot owns it.
func (s *store) setValue(sl *slot, v []byte) {
	before := outOfLineBytes(sl)
	s.storeValue(sl, v)
	s.mx.held += outOfLineBytes(sl) - before
}

func (s *store) storeValue(sl *slot, v []byte) {
	if len(v) <= inlineCap {
		sl.n = uint8(copy(sl.inl[:], v))
		sl.ext = nil
		return
	}
	if sl.n == outOfLine && (sl.ver == s.epoch || !s.shared(sl.ver)) {
		sl.ext.val = append(sl.ext.val[:0], v...)
	} else {
		sl.ext = s.newExt(len(v))
		sl.ext.val = append(sl.ext.val, v...)
	}
	sl.n, sl.ver = outOfLine, s.epoch
}

// Spare out-of-line values: the private buffer of a removed cell is kept
// for the next cell that goes out of line, so that a list cleared and
// refilled (a window, a join's rows) does not allocate and grow a new
// buffer every time.
const (
	maxSpares   = 32
	maxSpareCap = 64 << 10
)

// putSpare keeps e (a removed cell's private ext) for reuse.
func (s *store) putSpare(e *ext) {
	if e == nil || e.entries != nil || cap(e.val) > maxSpareCap || len(s.spares) >= maxSpares {
		return
	}
	e.val = e.val[:0]
	s.spares = append(s.spares, e)
}

// newExt returns an empty out-of-line value for about n bytes: a spare if
// there is one.
func (s *store) newExt(n int) *ext {
	if k := len(s.spares); k > 0 {
		e := s.spares[k-1]
		s.spares[k-1] = nil
		s.spares = s.spares[:k-1]
		return e
	}
	return &ext{val: make([]byte, 0, n)}
}

func (s *store) Get(c *statebackend.Cell) ([]byte, bool, error) {
	sl := s.lookup(c)
	if sl == nil {
		return nil, false, nil
	}
	return sl.value(), true, nil
}

func (s *store) Set(c *statebackend.Cell, v []byte) error {
	s.setValue(s.wslot(c), v)
	return nil
}

func (s *store) Append(c *statebackend.Cell, v []byte) error {
	sl := s.wslot(c)
	before := outOfLineBytes(sl)
	cur := sl.value()
	switch {
	case len(cur)+len(v) <= inlineCap:
		sl.n += uint8(copy(sl.inl[sl.n:], v))
	case sl.n == outOfLine && (sl.ver == s.epoch || !s.shared(sl.ver)):
		sl.ext.val = append(sl.ext.val, v...)
		sl.ver = s.epoch
	default:
		e := s.newExt(2 * (len(cur) + len(v)))
		e.val = append(append(e.val, cur...), v...)
		sl.ext = e
		sl.n, sl.ver = outOfLine, s.epoch
	}
	s.mx.held += outOfLineBytes(sl) - before
	return nil
}

func (s *store) Delete(c *statebackend.Cell) error {
	if st, i := s.find(c); i >= 0 {
		s.remove(st, i)
	}
	return nil
}

func (s *store) GetEntry(c *statebackend.Cell, uk []byte) ([]byte, bool, error) {
	sl := s.lookup(c)
	if sl == nil {
		return nil, false, nil
	}
	e := sl.entries()[string(uk)]
	if e == nil {
		return nil, false, nil
	}
	return e.v, true, nil
}

// wentries returns the slot's entry map for writing: created if absent,
// copied first if a view holds it (the entries are versioned themselves).
func (s *store) wentries(sl *slot) map[string]*entry {
	switch {
	case sl.ext == nil || sl.ext.entries == nil:
		sl.ext, sl.ver = &ext{entries: map[string]*entry{}}, s.epoch
	case sl.ver != s.epoch:
		if s.shared(sl.ver) {
			sl.ext = &ext{entries: maps.Clone(sl.ext.entries), nbytes: sl.ext.nbytes}
		}
		sl.ver = s.epoch
	}
	return sl.ext.entries
}

func (s *store) SetEntry(c *statebackend.Cell, uk, v []byte) error {
	sl := s.wslot(c)
	m := s.wentries(sl)
	e := m[string(uk)]
	d := int64(len(v))
	if e == nil {
		d += int64(len(uk))
	} else {
		d -= int64(len(e.v))
	}
	sl.ext.nbytes += d
	s.mx.held += d
	if e != nil && (e.ver == s.epoch || !s.shared(e.ver)) {
		e.ver = s.epoch
		e.v = append(e.v[:0], v...)
		return nil
	}
	m[string(uk)] = &entry{v: append([]byte(nil), v...), ver: s.epoch}
	return nil
}

func (s *store) DeleteEntry(c *statebackend.Cell, uk []byte) error {
	st, i := s.find(c)
	if i < 0 {
		return nil
	}
	es := st.at(i).entries()
	if _, ok := es[string(uk)]; !ok {
		if len(es) == 0 {
			s.remove(st, i)
		}
		return nil
	}
	sl := s.wat(st, i)
	es = s.wentries(sl)
	d := int64(len(uk) + len(es[string(uk)].v))
	sl.ext.nbytes -= d
	s.mx.held -= d
	delete(es, string(uk))
	if len(es) == 0 {
		s.remove(st, i)
	}
	return nil
}

func (s *store) RangeEntries(c *statebackend.Cell, fn func(uk, v []byte) bool) error {
	sl := s.lookup(c)
	if sl == nil {
		return nil
	}
	for k, e := range sl.entries() {
		if !fn(bytesOf(k), e.v) {
			return nil
		}
	}
	return nil
}

func (s *store) DeleteEntries(c *statebackend.Cell) error { return s.Delete(c) }

// visit passes the items of one cell to fn: its value, or its map entries.
// key is the slot's cell key, value its value (read before fn runs).
func visit(key string, value []byte, entries map[string]*entry, fn func(key, ns, uk, v []byte) error) error {
	k, ns, _, err := statebackend.SplitCellKey(bytesOf(key))
	if err != nil {
		return err
	}
	if entries == nil {
		return fn(k, ns, nil, value)
	}
	for uk, e := range entries {
		if err := fn(k, ns, bytesOf(uk), e.v); err != nil {
			return err
		}
	}
	return nil
}

// Scan visits the live cells of a state in one key group. fn may write
// the item it visits (a delete frees its slot without compacting; a write
// to a frozen chunk copies the chunk, slot numbers are kept).
func (s *store) Scan(state uint16, kg int, fn func(key, ns, uk, v []byte) error) error {
	st := s.stateTab(state, false)
	if st == nil || kg < s.start || kg-s.start >= s.n {
		return nil
	}
	s.scanning = true
	defer func() { s.scanning = false }()
	var val []byte
	for _, i := range st.idx[kg-s.start] {
		sl := st.at(i)
		if sl.ext == nil || sl.ext.entries == nil {
			// fn may overwrite the slot (inline values are in it): pass a
			// copy of the value.
			val = append(val[:0], sl.value()...)
			if err := visit(sl.key, val, nil, fn); err != nil {
				return err
			}
			continue
		}
		if err := visit(sl.key, nil, sl.ext.entries, fn); err != nil {
			return err
		}
	}
	return nil
}
