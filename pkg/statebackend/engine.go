package statebackend

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
)

// Errors of the keyed backend.
var (
	// ErrNoCurrentKey: keyed state or a timer was used before SetCurrentKey.
	ErrNoCurrentKey = errors.New("no current key: keyed state and timers are only usable while a record or timer is processed")
	// ErrKeyGroupOutOfRange: the current key group is not owned by this backend.
	ErrKeyGroupOutOfRange = errors.New("key group outside the backend's key-group range")
	// ErrUnknownState: an ingested entry names a state that was not restored.
	ErrUnknownState = errors.New("unknown state")
	// ErrTooManyStates: more than 65534 states were declared.
	ErrTooManyStates = errors.New("too many states")
)

// Timer state names used in canonical entries (see Entry).
const (
	EventTimersState      = "\x00timers/event-time"
	ProcessingTimersState = "\x00timers/processing-time"
)

// Options configure an Engine.
type Options struct {
	// KeyGroups is the range of key groups this backend holds. Default: all
	// of [0, MaxParallelism-1].
	KeyGroups keygroup.Range
	// MaxParallelism is the number of key groups of the job. Default:
	// keygroup.DefaultMaxParallelism.
	MaxParallelism int
	// Clock is the processing-time clock for TTL and CurrentProcessingTime.
	// Default: the wall clock.
	Clock api.Clock
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (o *Options) ensureDefaults() error {
	if o.MaxParallelism == 0 {
		o.MaxParallelism = keygroup.DefaultMaxParallelism
	}
	if o.MaxParallelism < 1 || o.MaxParallelism > keygroup.UpperBoundMaxParallelism {
		return fmt.Errorf("state backend: MaxParallelism %d out of range: use 1..%d", o.MaxParallelism, keygroup.UpperBoundMaxParallelism)
	}
	if o.KeyGroups == (keygroup.Range{}) {
		o.KeyGroups = keygroup.Range{Start: 0, End: o.MaxParallelism - 1}
	}
	if o.KeyGroups.Start < 0 || o.KeyGroups.End >= o.MaxParallelism || o.KeyGroups.Len() == 0 {
		return fmt.Errorf("state backend: key groups %v not within [0, %d]: compute them with keygroup.RangeFor", o.KeyGroups, o.MaxParallelism-1)
	}
	if o.Clock == nil {
		o.Clock = wallClock{}
	}
	return nil
}

// Entry is one item of state in the canonical, backend-neutral form used by
// Iterate and Ingest. For value, reducing and aggregating states UserKey is
// empty and Value is the stored value; for list states Value is the whole
// framed list; for map states there is one Entry per map entry. With TTL,
// values carry their 8-byte refresh timestamp first (see docs/state.md for
// the byte layout). Timers are entries of the states EventTimersState and
// ProcessingTimersState with UserKey the 8-byte big-endian timestamp and an
// empty Value.
type Entry struct {
	State     string
	KeyGroup  int
	Key       []byte
	Namespace []byte
	UserKey   []byte
	Value     []byte
}

type stateMeta struct {
	id   uint16
	spec api.StateSpec
	ttl  int64 // milliseconds; 0 without TTL
	// expired counts the expired entries removed (metrics.go).
	expired int64
}

// Engine is a keyed state backend: the api.KeyedStateStore and
// api.TimerService of a keyed operator, over a Store. heap.New and
// pebble.Open return one. It is used by one goroutine.
type Engine struct {
	store   Store
	opts    Options
	key     []byte
	kg      int
	hasKey  bool
	states  map[string]*stateMeta
	byID    []*stateMeta
	wm      int64
	procNow int64
	tbuf    []byte
	fbuf    []byte
	// incremental sweep cursor
	sweepState, sweepKG int
	mx                  engineMetrics // metrics.go
}

// NewEngine wraps a store. Drivers call it; users call heap.New or
// pebble.Open.
func NewEngine(store Store, opts Options) (*Engine, error) {
	if err := opts.ensureDefaults(); err != nil {
		return nil, err
	}
	e := &Engine{store: store, opts: opts, states: map[string]*stateMeta{}, wm: math.MinInt64, procNow: math.MinInt64}
	saved, err := store.SavedStates()
	if err != nil {
		return nil, fmt.Errorf("load saved state registrations: %w", err)
	}
	ids := make([]uint16, 0, len(saved))
	for id := range saved {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		var spec api.StateSpec
		if err := json.Unmarshal(saved[id], &spec); err != nil {
			return nil, fmt.Errorf("saved registration of state id %d: %w: %w", id, ErrCorrupt, err)
		}
		if err := e.addMeta(id, spec); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Engine) addMeta(id uint16, spec api.StateSpec) error {
	m := &stateMeta{id: id, spec: spec}
	if spec.TTL != nil {
		t := *spec.TTL
		m.spec.TTL = &t
		m.ttl = t.TTL.Milliseconds()
	}
	for int(id) >= len(e.byID) {
		e.byID = append(e.byID, nil)
	}
	if e.byID[id] != nil {
		return fmt.Errorf("state id %d registered twice (%q, %q): %w", id, e.byID[id].spec.Name, spec.Name, ErrCorrupt)
	}
	e.byID[id] = m
	e.states[spec.Name] = m
	return nil
}

// KeyGroups is the key-group range the backend holds.
func (e *Engine) KeyGroups() keygroup.Range { return e.opts.KeyGroups }

// MaxParallelism is the job's number of key groups.
func (e *Engine) MaxParallelism() int { return e.opts.MaxParallelism }

// Store returns the driver (for driver-specific operations).
func (e *Engine) Store() Store { return e.store }

// SetCurrentKey scopes state accesses and timer registrations to key, whose
// key group the caller computed with keygroup.Assign. The key is copied.
func (e *Engine) SetCurrentKey(key []byte, keyGroup int) {
	e.key = append(e.key[:0], key...)
	e.kg = keyGroup
	e.hasKey = true
}

// CurrentKey implements api.KeyedStateStore.
func (e *Engine) CurrentKey() []byte { return e.key }

// CurrentKeyGroup implements api.KeyedStateStore.
func (e *Engine) CurrentKeyGroup() int { return e.kg }

// States returns the specs of all declared or restored states, by id.
func (e *Engine) States() []api.StateSpec {
	out := make([]api.StateSpec, 0, len(e.byID))
	for _, m := range e.byID {
		if m != nil {
			out = append(out, m.spec)
		}
	}
	return out
}

func sameTTLShape(a, b *api.TTLConfig) bool { return (a == nil) == (b == nil) }

// KeyedState implements api.KeyedStateStore.
func (e *Engine) KeyedState(spec api.StateSpec) (api.RawState, error) {
	if spec.Name == "" || spec.Name[0] == 0 {
		return nil, fmt.Errorf("declare state %q: name must be non-empty and not start with NUL", spec.Name)
	}
	if spec.Kind < api.StateValue || spec.Kind > api.StateAggregating {
		return nil, fmt.Errorf("declare state %q: unknown kind %v", spec.Name, spec.Kind)
	}
	if err := spec.TTL.Validate(); err != nil {
		return nil, fmt.Errorf("declare state %q: %w", spec.Name, err)
	}
	m, ok := e.states[spec.Name]
	if ok {
		old := m.spec
		if old.Kind != spec.Kind || old.KeyCodec != spec.KeyCodec || old.ValueCodec != spec.ValueCodec || !sameTTLShape(old.TTL, spec.TTL) {
			return nil, fmt.Errorf("declare state %q as %v (key codec %q, value codec %q, TTL %v): it exists as %v (key codec %q, value codec %q, TTL %v); use another name or the same descriptor: %w",
				spec.Name, spec.Kind, spec.KeyCodec, spec.ValueCodec, spec.TTL, old.Kind, old.KeyCodec, old.ValueCodec, old.TTL, api.ErrStateConflict)
		}
		if spec.TTL != nil && *spec.TTL != *old.TTL {
			// TTL parameters may change (timestamps are stored, not deadlines).
			t := *spec.TTL
			m.spec.TTL, m.ttl = &t, t.TTL.Milliseconds()
			if err := e.saveMeta(m); err != nil {
				return nil, err
			}
		}
	} else {
		if len(e.byID) >= math.MaxUint16-1 {
			return nil, fmt.Errorf("declare state %q: %w (limit 65534)", spec.Name, ErrTooManyStates)
		}
		id := uint16(len(e.byID))
		if err := e.addMeta(id, spec); err != nil {
			return nil, err
		}
		m = e.byID[id]
		if err := e.saveMeta(m); err != nil {
			return nil, err
		}
	}
	s := state{e: e, m: m}
	s.cell.State = m.id
	switch m.spec.Kind {
	case api.StateList:
		return &listState{state: s}, nil
	case api.StateMap:
		return &mapState{state: s}, nil
	default:
		return &valueState{s}, nil
	}
}

func (e *Engine) saveMeta(m *stateMeta) error {
	b, err := json.Marshal(m.spec)
	if err != nil {
		return fmt.Errorf("save registration of state %q: %w", m.spec.Name, err)
	}
	if err := e.store.SaveState(m.id, b); err != nil {
		return fmt.Errorf("save registration of state %q: %w", m.spec.Name, err)
	}
	return nil
}

// ---- time ----

// CurrentWatermark implements api.TimerService.
func (e *Engine) CurrentWatermark() int64 { return e.wm }

// CurrentProcessingTime implements api.TimerService: the clock, in Unix ms.
func (e *Engine) CurrentProcessingTime() int64 { return e.opts.Clock.Now().UnixMilli() }

func (m *stateMeta) now(e *Engine) int64 {
	if m.spec.TTL.Time == api.TTLEventTime {
		return e.wm
	}
	return e.opts.Clock.Now().UnixMilli()
}

// ---- handles ----

type state struct {
	e    *Engine
	m    *stateMeta
	ns   []byte
	cell Cell
	buf  []byte
}

func (s *state) SetNamespace(ns []byte) { s.ns = append(s.ns[:0], ns...) }

func (s *state) at() (*Cell, error) {
	e := s.e
	if !e.hasKey {
		return nil, fmt.Errorf("state %q: %w", s.m.spec.Name, ErrNoCurrentKey)
	}
	if e.kg < e.opts.KeyGroups.Start || e.kg > e.opts.KeyGroups.End {
		return nil, fmt.Errorf("state %q, key %s: key group %d not in %v: %w", s.m.spec.Name, strconv.Quote(string(e.key)), e.kg, e.opts.KeyGroups, ErrKeyGroupOutOfRange)
	}
	s.cell.KeyGroup, s.cell.Key, s.cell.Namespace = e.kg, e.key, s.ns
	return &s.cell, nil
}

func (s *state) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s state %q, key %s: %w", op, s.m.spec.Name, strconv.Quote(string(s.e.key)), err)
}

func (s *state) withTS(dst []byte, ts int64, v []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	return append(dst, v...)
}

// splitTTL parses a TTL-framed value.
func (s *state) splitTTL(b []byte) (int64, []byte, error) {
	if len(b) < 8 {
		return 0, nil, s.wrap("read", fmt.Errorf("TTL header of %d bytes: %w", len(b), ErrCorrupt))
	}
	return int64(binary.BigEndian.Uint64(b)), b[8:], nil
}

type valueState struct{ state }

func (s *valueState) get() ([]byte, bool, error) {
	c, err := s.at()
	if err != nil {
		return nil, false, err
	}
	b, ok, err := s.e.store.Get(c)
	if err != nil || !ok {
		return nil, false, s.wrap("read", err)
	}
	if s.m.ttl == 0 {
		return b, true, nil
	}
	ts, p, err := s.splitTTL(b)
	if err != nil {
		return nil, false, err
	}
	now := s.m.now(s.e)
	if ttlExpired(ts, now, s.m.ttl) {
		if s.m.spec.TTL.Visibility != api.NeverReturnExpired {
			s.buf = append(s.buf[:0], p...) // p is the store's: gone with the Delete
			p = s.buf
		}
		if err := s.e.store.Delete(c); err != nil {
			return nil, false, s.wrap("clean up expired", err)
		}
		s.m.expired++
		if s.m.spec.TTL.Visibility == api.NeverReturnExpired {
			return nil, false, nil
		}
		return p, true, nil
	}
	if s.m.spec.TTL.Update == api.OnReadAndWrite && ts != now {
		s.buf = s.withTS(s.buf[:0], now, p)
		if err := s.e.store.Set(c, s.buf); err != nil {
			return nil, false, s.wrap("refresh TTL of", err)
		}
		return s.buf[8:], true, nil
	}
	return p, true, nil
}

func (s *valueState) put(v []byte) error {
	c, err := s.at()
	if err != nil {
		return err
	}
	if s.m.ttl != 0 {
		s.buf = s.withTS(s.buf[:0], s.m.now(s.e), v)
		v = s.buf
	}
	return s.wrap("write", s.e.store.Set(c, v))
}

func (s *valueState) clear() error {
	c, err := s.at()
	if err != nil {
		return err
	}
	return s.wrap("clear", s.e.store.Delete(c))
}

type listState struct {
	state
	copyBuf []byte
}

func (s *listState) append(v []byte) error {
	c, err := s.at()
	if err != nil {
		return err
	}
	n := len(v)
	if s.m.ttl != 0 {
		n += 8
	}
	s.buf = binary.AppendUvarint(s.buf[:0], uint64(n))
	if s.m.ttl != 0 {
		s.buf = binary.BigEndian.AppendUint64(s.buf, uint64(s.m.now(s.e)))
	}
	s.buf = append(s.buf, v...)
	return s.wrap("append to", s.e.store.Append(c, s.buf))
}

// nextFrame splits the first element off a framed list.
func nextFrame(b []byte) (elem, rest []byte, err error) {
	if len(b) > 0 && b[0] < 0x80 { // one-byte length: small elements
		if n := int(b[0]); n < len(b) {
			return b[1 : 1+n], b[1+n:], nil
		}
	}
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, fmt.Errorf("list frame: %w", ErrCorrupt)
	}
	return b[w : w+int(n)], b[w+int(n):], nil
}

// rewriteList drops expired elements of a framed list and, if refresh,
// sets the timestamps of the others to now. It reports whether anything
// changed.
func (m *stateMeta) rewriteList(dst, b []byte, now int64, refresh bool) ([]byte, bool, error) {
	changed := false
	for len(b) > 0 {
		el, rest, err := nextFrame(b)
		if err != nil {
			return nil, false, err
		}
		b = rest
		if len(el) < 8 {
			return nil, false, fmt.Errorf("list element TTL header: %w", ErrCorrupt)
		}
		ts := int64(binary.BigEndian.Uint64(el))
		if ttlExpired(ts, now, m.ttl) {
			changed = true
			m.expired++
			continue
		}
		if refresh && ts != now {
			changed = true
			ts = now
		}
		dst = binary.AppendUvarint(dst, uint64(len(el)))
		dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
		dst = append(dst, el[8:]...)
	}
	return dst, changed, nil
}

func (s *listState) rangeList(fn func(v []byte) bool) error {
	c, err := s.at()
	if err != nil {
		return err
	}
	b, ok, err := s.e.store.Get(c)
	if err != nil || !ok {
		return s.wrap("read", err)
	}
	now, vis := int64(0), api.NeverReturnExpired
	if s.m.ttl != 0 {
		now, vis = s.m.now(s.e), s.m.spec.TTL.Visibility
		s.copyBuf = append(s.copyBuf[:0], b...)
		b = s.copyBuf
		nb, changed, err := s.m.rewriteList(s.buf[:0], b, now, s.m.spec.TTL.Update == api.OnReadAndWrite)
		if err != nil {
			return s.wrap("read", err)
		}
		s.buf = nb
		if changed {
			if len(nb) == 0 {
				err = s.e.store.Delete(c)
			} else {
				err = s.e.store.Set(c, nb)
			}
			if err != nil {
				return s.wrap("clean up expired elements of", err)
			}
		}
	}
	for len(b) > 0 {
		el, rest, err := nextFrame(b)
		if err != nil {
			return s.wrap("read", err)
		}
		b = rest
		if s.m.ttl != 0 {
			if len(el) < 8 {
				return s.wrap("read", fmt.Errorf("list element TTL header: %w", ErrCorrupt))
			}
			ts := int64(binary.BigEndian.Uint64(el))
			el = el[8:]
			if vis == api.NeverReturnExpired && ttlExpired(ts, now, s.m.ttl) {
				continue
			}
		}
		if !fn(el) {
			return nil
		}
	}
	return nil
}

func (s *listState) clear() error {
	c, err := s.at()
	if err != nil {
		return err
	}
	return s.wrap("clear", s.e.store.Delete(c))
}

type mapState struct {
	state
	pendingDel [][]byte
	pendingSet [][2][]byte
}

func (s *mapState) get(uk []byte) ([]byte, bool, error) {
	c, err := s.at()
	if err != nil {
		return nil, false, err
	}
	b, ok, err := s.e.store.GetEntry(c, uk)
	if err != nil || !ok {
		return nil, false, s.wrap("read", err)
	}
	if s.m.ttl == 0 {
		return b, true, nil
	}
	ts, p, err := s.splitTTL(b)
	if err != nil {
		return nil, false, err
	}
	now := s.m.now(s.e)
	if ttlExpired(ts, now, s.m.ttl) {
		if s.m.spec.TTL.Visibility != api.NeverReturnExpired {
			s.buf = append(s.buf[:0], p...) // p is the store's: gone with the DeleteEntry
			p = s.buf
		}
		if err := s.e.store.DeleteEntry(c, uk); err != nil {
			return nil, false, s.wrap("clean up expired entry of", err)
		}
		s.m.expired++
		if s.m.spec.TTL.Visibility == api.NeverReturnExpired {
			return nil, false, nil
		}
		return p, true, nil
	}
	if s.m.spec.TTL.Update == api.OnReadAndWrite && ts != now {
		s.buf = s.withTS(s.buf[:0], now, p)
		if err := s.e.store.SetEntry(c, uk, s.buf); err != nil {
			return nil, false, s.wrap("refresh TTL of", err)
		}
		return s.buf[8:], true, nil
	}
	return p, true, nil
}

func (s *mapState) put(uk, v []byte) error {
	c, err := s.at()
	if err != nil {
		return err
	}
	if s.m.ttl != 0 {
		s.buf = s.withTS(s.buf[:0], s.m.now(s.e), v)
		v = s.buf
	}
	return s.wrap("write", s.e.store.SetEntry(c, uk, v))
}

func (s *mapState) delete(uk []byte) error {
	c, err := s.at()
	if err != nil {
		return err
	}
	return s.wrap("delete from", s.e.store.DeleteEntry(c, uk))
}

func (s *mapState) rangeMap(fn func(uk, v []byte) bool) error {
	c, err := s.at()
	if err != nil {
		return err
	}
	if s.m.ttl == 0 {
		return s.wrap("iterate", s.e.store.RangeEntries(c, fn))
	}
	now := s.m.now(s.e)
	vis, refresh := s.m.spec.TTL.Visibility, s.m.spec.TTL.Update == api.OnReadAndWrite
	s.pendingDel, s.pendingSet = s.pendingDel[:0], s.pendingSet[:0]
	var ferr error
	err = s.e.store.RangeEntries(c, func(uk, v []byte) bool {
		if len(v) < 8 {
			ferr = fmt.Errorf("map entry TTL header: %w", ErrCorrupt)
			return false
		}
		ts, p := int64(binary.BigEndian.Uint64(v)), v[8:]
		if ttlExpired(ts, now, s.m.ttl) {
			s.pendingDel = append(s.pendingDel, slices.Clone(uk))
			if vis == api.NeverReturnExpired {
				return true
			}
		} else if refresh && ts != now {
			s.pendingSet = append(s.pendingSet, [2][]byte{slices.Clone(uk), s.withTS(nil, now, p)})
		}
		return fn(uk, p)
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return s.wrap("iterate", err)
	}
	for _, uk := range s.pendingDel {
		if err := s.e.store.DeleteEntry(c, uk); err != nil {
			return s.wrap("clean up expired entry of", err)
		}
		s.m.expired++
	}
	for _, kv := range s.pendingSet {
		if err := s.e.store.SetEntry(c, kv[0], kv[1]); err != nil {
			return s.wrap("refresh TTL of", err)
		}
	}
	return nil
}

func (s *mapState) clear() error {
	c, err := s.at()
	if err != nil {
		return err
	}
	return s.wrap("clear", s.e.store.DeleteEntries(c))
}

// ---- TTL sweeps ----

// sweepKeyGroup removes the expired items of one TTL state in one key group.
func (e *Engine) sweepKeyGroup(m *stateMeta, kg int) error {
	now := m.now(e)
	c := Cell{State: m.id, KeyGroup: kg}
	var buf []byte
	err := e.store.Scan(m.id, kg, func(key, ns, uk, v []byte) error {
		c.Key, c.Namespace = key, ns
		switch m.spec.Kind {
		case api.StateList:
			nb, changed, err := m.rewriteList(buf[:0], v, now, false)
			if err != nil {
				return err
			}
			buf = nb
			if !changed {
				return nil
			}
			if len(nb) == 0 {
				return e.store.Delete(&c)
			}
			return e.store.Set(&c, nb)
		case api.StateMap:
			if len(v) < 8 {
				return fmt.Errorf("map entry TTL header: %w", ErrCorrupt)
			}
			if ttlExpired(int64(binary.BigEndian.Uint64(v)), now, m.ttl) {
				m.expired++
				return e.store.DeleteEntry(&c, uk)
			}
		default:
			if len(v) < 8 {
				return fmt.Errorf("TTL header: %w", ErrCorrupt)
			}
			if ttlExpired(int64(binary.BigEndian.Uint64(v)), now, m.ttl) {
				m.expired++
				return e.store.Delete(&c)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sweep expired entries of state %q in key group %d: %w", m.spec.Name, kg, err)
	}
	return nil
}

// CleanupExpired removes every expired entry of every TTL state (a full
// sweep, e.g. before a full snapshot).
func (e *Engine) CleanupExpired() error {
	for _, m := range e.byID {
		if m == nil || m.ttl == 0 {
			continue
		}
		for kg := e.opts.KeyGroups.Start; kg <= e.opts.KeyGroups.End; kg++ {
			if err := e.sweepKeyGroup(m, kg); err != nil {
				return err
			}
		}
	}
	return nil
}

// SweepExpired is the incremental sweep: it cleans up to maxKeyGroups
// (state, key group) pairs, resuming where the previous call stopped, and
// reports whether it completed a full round. The task goroutine calls it
// when idle or every N records; no other goroutine touches the state.
func (e *Engine) SweepExpired(maxKeyGroups int) (roundDone bool, err error) {
	r := e.opts.KeyGroups
	for done := 0; done < maxKeyGroups; {
		if e.sweepState >= len(e.byID) {
			e.sweepState, e.sweepKG = 0, r.Start
			return true, nil
		}
		m := e.byID[e.sweepState]
		if m == nil || m.ttl == 0 || e.sweepKG > r.End {
			e.sweepState++
			e.sweepKG = r.Start
			continue
		}
		if e.sweepKG < r.Start {
			e.sweepKG = r.Start
		}
		if err := e.sweepKeyGroup(m, e.sweepKG); err != nil {
			return false, err
		}
		e.sweepKG++
		done++
	}
	return false, nil
}

// ---- timers ----

func (e *Engine) timer(d api.TimeDomain, ts int64, ns []byte, del bool) error {
	if !e.hasKey {
		return fmt.Errorf("%v timer at %d: %w", d, ts, ErrNoCurrentKey)
	}
	if !e.opts.KeyGroups.Contains(e.kg) {
		return fmt.Errorf("%v timer at %d, key %s: key group %d not in %v: %w", d, ts, strconv.Quote(string(e.key)), e.kg, e.opts.KeyGroups, ErrKeyGroupOutOfRange)
	}
	e.tbuf = EncodeTimer(e.tbuf[:0], d, ts, e.kg, e.key, ns)
	var err error
	if del {
		err = e.store.DeleteTimer(e.tbuf)
	} else {
		err = e.store.AddTimer(e.tbuf)
		e.mx.timersRegistered++
	}
	if err != nil {
		return fmt.Errorf("%v timer at %d, key %s: %w", d, ts, strconv.Quote(string(e.key)), err)
	}
	return nil
}

// RegisterEventTimeTimer implements api.TimerService.
func (e *Engine) RegisterEventTimeTimer(ts int64, ns []byte) error {
	return e.timer(api.EventTime, ts, ns, false)
}

// DeleteEventTimeTimer implements api.TimerService.
func (e *Engine) DeleteEventTimeTimer(ts int64, ns []byte) error {
	return e.timer(api.EventTime, ts, ns, true)
}

// RegisterProcessingTimeTimer implements api.TimerService.
func (e *Engine) RegisterProcessingTimeTimer(ts int64, ns []byte) error {
	return e.timer(api.ProcessingTime, ts, ns, false)
}

// DeleteProcessingTimeTimer implements api.TimerService.
func (e *Engine) DeleteProcessingTimeTimer(ts int64, ns []byte) error {
	return e.timer(api.ProcessingTime, ts, ns, true)
}

// NextTimer returns the timestamp of the earliest timer of a domain (the
// runtime schedules its processing-time wake-up with it).
func (e *Engine) NextTimer(d api.TimeDomain) (int64, bool, error) {
	b, ok, err := e.store.FirstTimer(d)
	if err != nil || !ok {
		return 0, false, err
	}
	t, err := DecodeTimer(b)
	if err != nil {
		return 0, false, err
	}
	return t.Timestamp, true, nil
}

func (e *Engine) advance(d api.TimeDomain, to int64, fire func(api.Timer) error) error {
	for {
		b, ok, err := e.store.FirstTimer(d)
		if err != nil {
			return fmt.Errorf("next %v timer: %w", d, err)
		}
		if !ok {
			return nil
		}
		t, err := DecodeTimer(b)
		if err != nil {
			return err
		}
		if t.Timestamp > to {
			return nil
		}
		// Own the bytes: firing may register timers and reuse driver buffers.
		e.fbuf = append(e.fbuf[:0], b...)
		if err := e.store.DeleteTimer(e.fbuf); err != nil {
			return fmt.Errorf("delete fired %v timer: %w", d, err)
		}
		t, _ = DecodeTimer(e.fbuf)
		e.SetCurrentKey(t.Key, t.KeyGroup)
		e.mx.timersFired++
		if err := fire(t); err != nil {
			return err
		}
	}
}

// AdvanceWatermark raises the watermark to ts (it never goes back) and fires
// every event-time timer with timestamp <= ts in timestamp order, each with
// its key current. Timers registered by fire that are due fire too. The
// Timer's slices are valid during the fire call only.
func (e *Engine) AdvanceWatermark(ts int64, fire func(api.Timer) error) error {
	if ts > e.wm {
		e.wm = ts
	}
	return e.advance(api.EventTime, e.wm, fire)
}

// AdvanceProcessingTime fires every processing-time timer with timestamp <=
// now (Unix ms) in timestamp order, each with its key current.
func (e *Engine) AdvanceProcessingTime(now int64, fire func(api.Timer) error) error {
	if now > e.procNow {
		e.procNow = now
	}
	return e.advance(api.ProcessingTime, e.procNow, fire)
}

// ---- canonical iteration and ingest ----

// Iterate calls fn for every state entry of the key groups in r, key group
// by key group (states in declaration order within a key group), then for
// every timer of r. Entry slices are valid during the call only. r is
// clipped to the backend's range.
func (e *Engine) Iterate(r keygroup.Range, fn func(Entry) error) error {
	own := e.opts.KeyGroups
	r.Start, r.End = max(r.Start, own.Start), min(r.End, own.End)
	for kg := r.Start; kg <= r.End; kg++ {
		for _, m := range e.byID {
			if m == nil {
				continue
			}
			err := e.store.Scan(m.id, kg, func(key, ns, uk, v []byte) error {
				return fn(Entry{State: m.spec.Name, KeyGroup: kg, Key: key, Namespace: ns, UserKey: uk, Value: v})
			})
			if err != nil {
				return fmt.Errorf("iterate state %q in key group %d: %w", m.spec.Name, kg, err)
			}
		}
	}
	if r.Len() == 0 {
		return nil
	}
	var tsb [8]byte
	return e.store.ScanTimers(r.Start, r.End, func(b []byte) error {
		t, err := DecodeTimer(b)
		if err != nil {
			return err
		}
		name := EventTimersState
		if t.Domain == api.ProcessingTime {
			name = ProcessingTimersState
		}
		binary.BigEndian.PutUint64(tsb[:], uint64(t.Timestamp))
		return fn(Entry{State: name, KeyGroup: t.KeyGroup, Key: t.Key, Namespace: t.Namespace, UserKey: tsb[:]})
	})
}

// ---- point-in-time views (copy-on-write snapshots) ----

// ViewStore is implemented by stores that take a consistent, read-only view
// of their contents cheaply on the owning goroutine, without copying the
// state (the heap store: copy-on-write). Engine.View uses it.
type ViewStore interface {
	Store
	// View freezes the current contents. It is called on the goroutine
	// that owns the store.
	View() (StoreView, error)
}

// StoreView is a point-in-time view of a Store. Its Scan and ScanTimers
// may run on any goroutine, concurrently with writes to the store, and
// see the contents as of View; fn must not retain or modify the slices.
// Release frees the view (idempotent, any goroutine, not concurrently with
// a Scan of the same view).
type StoreView interface {
	Scan(state uint16, keyGroup int, fn func(key, ns, userKey, v []byte) error) error
	ScanTimers(start, end int, fn func(t []byte) error) error
	Release()
}

// ErrViewReleased: a View or StoreView was used after Release.
var ErrViewReleased = errors.New("state view used after Release")

// ErrNoViews: the Engine's store cannot take views (Pebble uses native
// checkpoints instead).
var ErrNoViews = errors.New("state store takes no copy-on-write views")

// View is a consistent, read-only view of an Engine's state and timers as
// of the moment it was taken. It is taken on the task goroutine in time
// independent of the amount of state, then read on any goroutine while the
// task keeps writing; Release it when done (until then the store keeps
// the frozen data alive and copies what the task writes to).
type View struct {
	sv     StoreView
	names  []string // by state id; "" for unused ids
	specs  []api.StateSpec
	kgs    keygroup.Range
	maxPar int
}

// View takes a view, or fails with ErrNoViews when the store has none.
// Several views may be live at once.
func (e *Engine) View() (*View, error) {
	vs, ok := e.store.(ViewStore)
	if !ok {
		return nil, fmt.Errorf("view of %T: %w", e.store, ErrNoViews)
	}
	sv, err := vs.View()
	if err != nil {
		return nil, fmt.Errorf("take state view: %w", err)
	}
	v := &View{sv: sv, names: make([]string, len(e.byID)), specs: e.States(), kgs: e.opts.KeyGroups, maxPar: e.opts.MaxParallelism}
	for id, m := range e.byID {
		if m != nil {
			v.names[id] = m.spec.Name
		}
	}
	return v, nil
}

// States are the specs of the states the view holds (as States() at the
// time of the view).
func (v *View) States() []api.StateSpec { return v.specs }

// KeyGroups is the backend's key-group range.
func (v *View) KeyGroups() keygroup.Range { return v.kgs }

// MaxParallelism is the job's number of key groups.
func (v *View) MaxParallelism() int { return v.maxPar }

// Iterate is Engine.Iterate over the view: the same entries in the same
// order as Engine.Iterate at the time of the view. It may run on any
// goroutine.
func (v *View) Iterate(r keygroup.Range, fn func(Entry) error) error {
	return iterate(v.kgs, r, v.names, v.sv.Scan, v.sv.ScanTimers, fn)
}

// Release frees the view; further use fails with ErrViewReleased.
// Idempotent; any goroutine, but not concurrently with Iterate.
func (v *View) Release() { v.sv.Release() }

// iterate is Iterate over scan functions: every state entry of the key
// groups of r (clipped to own), key group by key group, states by id, then
// the timers of r.
func iterate(own, r keygroup.Range, names []string, scan func(uint16, int, func(key, ns, uk, v []byte) error) error,
	scanTimers func(int, int, func([]byte) error) error, fn func(Entry) error) error {
	r.Start, r.End = max(r.Start, own.Start), min(r.End, own.End)
	for kg := r.Start; kg <= r.End; kg++ {
		for id, name := range names {
			if name == "" {
				continue
			}
			err := scan(uint16(id), kg, func(key, ns, uk, v []byte) error {
				return fn(Entry{State: name, KeyGroup: kg, Key: key, Namespace: ns, UserKey: uk, Value: v})
			})
			if err != nil {
				return fmt.Errorf("iterate state %q in key group %d: %w", name, kg, err)
			}
		}
	}
	if r.Len() == 0 {
		return nil
	}
	var tsb [8]byte
	return scanTimers(r.Start, r.End, func(b []byte) error {
		t, err := DecodeTimer(b)
		if err != nil {
			return err
		}
		name := EventTimersState
		if t.Domain == api.ProcessingTime {
			name = ProcessingTimersState
		}
		binary.BigEndian.PutUint64(tsb[:], uint64(t.Timestamp))
		return fn(Entry{State: name, KeyGroup: t.KeyGroup, Key: t.Key, Namespace: t.Namespace, UserKey: tsb[:]})
	})
}

// RestoreStates registers the specs of a snapshot before Ingest; the
// operator's later declarations must match them (as for any redeclaration).
func (e *Engine) RestoreStates(specs []api.StateSpec) error {
	for _, spec := range specs {
		if _, err := e.KeyedState(spec); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	return nil
}

// Ingest writes one canonical entry (from Iterate of this or another
// backend). Entries of key groups outside the backend's range are skipped,
// so a subtask can read a superset stream when rescaling. States must have
// been registered with RestoreStates (or declared).
func (e *Engine) Ingest(en Entry) error {
	if !e.opts.KeyGroups.Contains(en.KeyGroup) {
		return nil
	}
	if en.State == EventTimersState || en.State == ProcessingTimersState {
		if len(en.UserKey) != 8 {
			return fmt.Errorf("ingest timer of key %s: timestamp of %d bytes: %w", strconv.Quote(string(en.Key)), len(en.UserKey), ErrCorrupt)
		}
		d := api.EventTime
		if en.State == ProcessingTimersState {
			d = api.ProcessingTime
		}
		e.tbuf = EncodeTimer(e.tbuf[:0], d, int64(binary.BigEndian.Uint64(en.UserKey)), en.KeyGroup, en.Key, en.Namespace)
		return e.store.AddTimer(e.tbuf)
	}
	m, ok := e.states[en.State]
	if !ok {
		return fmt.Errorf("ingest entry of state %q: %w: call RestoreStates with the snapshot's states first", en.State, ErrUnknownState)
	}
	c := &Cell{State: m.id, KeyGroup: en.KeyGroup, Key: en.Key, Namespace: en.Namespace}
	var err error
	if m.spec.Kind == api.StateMap {
		err = e.store.SetEntry(c, en.UserKey, en.Value)
	} else {
		err = e.store.Set(c, en.Value)
	}
	if err != nil {
		return fmt.Errorf("ingest entry of state %q, key %s: %w", en.State, strconv.Quote(string(en.Key)), err)
	}
	return nil
}

// Flush commits pending writes to the store.
func (e *Engine) Flush() error { return e.store.Flush() }

// Close flushes and closes the store.
func (e *Engine) Close() error { return e.store.Close() }
