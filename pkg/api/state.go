package api

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flowrt/flow/pkg/api/rawstate"
)

// Keyed state: every access is scoped to the current key (set by the runtime
// before each record and timer) and to the state's current namespace (empty
// unless the operator sets one, e.g. a window).
//
// A keyed operator declares its states in Open from descriptors:
//
//	count, err := api.GetValueState(store, api.ValueStateDescriptor[int64]{
//		Name: "count", Codec: api.Int64Codec(),
//	})
//
// Declaring the same name twice with the same kind and codecs returns a
// handle on the same state; another kind or codec fails with an error
// wrapping ErrStateConflict. The typed handles are used from the task
// goroutine only, like the operator itself.

// ErrStateConflict is wrapped when a state name is declared again with
// another kind, codec or TTL.
var ErrStateConflict = errors.New("state declared again with a different kind, codec or TTL")

// ErrStateDecode is wrapped when stored bytes do not decode; the message
// names the state and the key.
var ErrStateDecode = errors.New("cannot decode state value")

// ErrNoKeyedState is returned by KeyedStateStoreOf for a context without
// keyed state (the operator is not on a keyed stream).
var ErrNoKeyedState = errors.New("operator has no keyed state: declare it Keyed and give its input a keyBy")

// StateKind is the kind of a keyed state.
type StateKind uint8

const (
	StateValue StateKind = iota + 1
	StateList
	StateMap
	StateReducing
	StateAggregating
)

func (k StateKind) String() string {
	switch k {
	case StateValue:
		return "value"
	case StateList:
		return "list"
	case StateMap:
		return "map"
	case StateReducing:
		return "reducing"
	case StateAggregating:
		return "aggregating"
	}
	return fmt.Sprintf("StateKind(%d)", uint8(k))
}

// TTLUpdate says which accesses refresh an entry's timestamp.
type TTLUpdate uint8

const (
	// OnCreateAndWrite refreshes on writes only (the default).
	OnCreateAndWrite TTLUpdate = iota
	// OnReadAndWrite also refreshes on every read.
	OnReadAndWrite
)

// TTLVisibility says whether an expired entry still present may be returned.
type TTLVisibility uint8

const (
	// NeverReturnExpired treats expired entries as absent (the default).
	NeverReturnExpired TTLVisibility = iota
	// ReturnExpiredIfNotCleanedUp returns an expired entry once if it has not
	// been cleaned up yet; the read cleans it up.
	ReturnExpiredIfNotCleanedUp
)

// TTLTime is the time that TTL is measured in.
type TTLTime uint8

const (
	// TTLProcessingTime measures TTL on the backend's processing-time clock
	// (the default).
	TTLProcessingTime TTLTime = iota
	// TTLEventTime measures TTL against the current watermark: an entry
	// written at watermark w expires once the watermark passes w+TTL.
	TTLEventTime
)

// TTLConfig enables time-to-live on a state. Each value (each list element,
// each map entry) carries the timestamp of its last refresh; it expires TTL
// after that. Expired entries are removed when accessed, by full sweeps
// (before snapshots) and by incremental sweeps the task drives.
type TTLConfig struct {
	TTL        time.Duration
	Update     TTLUpdate
	Visibility TTLVisibility
	Time       TTLTime
}

// Validate checks the configuration.
func (c *TTLConfig) Validate() error {
	if c == nil {
		return nil
	}
	if c.TTL < time.Millisecond {
		return fmt.Errorf("TTL %v is too small: use at least 1ms", c.TTL)
	}
	if c.Update > OnReadAndWrite || c.Visibility > ReturnExpiredIfNotCleanedUp || c.Time > TTLEventTime {
		return fmt.Errorf("TTL config %+v has an unknown mode", *c)
	}
	return nil
}

func (c *TTLConfig) String() string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%v/update=%d/visibility=%d/time=%d", c.TTL, c.Update, c.Visibility, c.Time)
}

// StateSpec is what a backend needs to know about a keyed state: the
// descriptors below reduce to it.
type StateSpec struct {
	Name string
	Kind StateKind
	// KeyCodec is the ID of the map key codec (map state only).
	KeyCodec string
	// ValueCodec is the ID of the value, element or accumulator codec.
	ValueCodec string
	TTL        *TTLConfig
}

// KeyedStateStore is implemented by state backends and exposed to keyed
// operators (see KeyedStateStoreOf). Operators use the typed getters
// (GetValueState, ...) rather than the raw handles.
type KeyedStateStore interface {
	// KeyedState declares a state and returns its raw handle (package
	// rawstate, for backends): a rawstate.Value for value, reducing and
	// aggregating states, a rawstate.List or a rawstate.Map.
	KeyedState(spec StateSpec) (rawstate.State, error)
	// CurrentKey is the key that state accesses are scoped to. The slice is
	// valid until the key changes.
	CurrentKey() []byte
	// CurrentKeyGroup is the key group of CurrentKey.
	CurrentKeyGroup() int
}

// KeyedStateContext is implemented by the Context of a keyed operator.
type KeyedStateContext interface {
	KeyedStateStore() KeyedStateStore
	TimerService() TimerService
}

// KeyedStateStoreOf returns the keyed state store of ctx, or an error
// wrapping ErrNoKeyedState.
func KeyedStateStoreOf(ctx Context) (KeyedStateStore, error) {
	if k, ok := ctx.(KeyedStateContext); ok && k.KeyedStateStore() != nil {
		return k.KeyedStateStore(), nil
	}
	return nil, fmt.Errorf("keyed state for operator %q: %w", ctx.Info().OperatorUID, ErrNoKeyedState)
}

// TimerServiceOf returns the timer service of ctx, or an error wrapping
// ErrNoKeyedState (timers are per key).
func TimerServiceOf(ctx Context) (TimerService, error) {
	if k, ok := ctx.(KeyedStateContext); ok && k.TimerService() != nil {
		return k.TimerService(), nil
	}
	return nil, fmt.Errorf("timers for operator %q: %w", ctx.Info().OperatorUID, ErrNoKeyedState)
}

func decodeErr(name string, key []byte, err error) error {
	return fmt.Errorf("%w: state %q, key %s: %w", ErrStateDecode, name, strconv.Quote(string(key)), err)
}

func encodeErr(name string, key []byte, err error) error {
	return fmt.Errorf("encode value of state %q, key %s: %w", name, strconv.Quote(string(key)), err)
}

func checkName(kind StateKind, name string, codecs ...bool) error {
	if name == "" {
		return fmt.Errorf("declare %v state: empty name: give the descriptor a Name", kind)
	}
	for _, ok := range codecs {
		if !ok {
			return fmt.Errorf("declare %v state %q: missing codec: set the descriptor's codec fields", kind, name)
		}
	}
	return nil
}

// ---- Value state ----

// ValueStateDescriptor declares a ValueState.
type ValueStateDescriptor[T any] struct {
	Name  string
	Codec Codec[T]
	// Default is returned by Value when the state holds nothing.
	Default T
	TTL     *TTLConfig
}

// ValueState holds one T per key and namespace.
type ValueState[T any] struct {
	name  string
	store KeyedStateStore
	raw   rawstate.Value
	codec Codec[T]
	def   T
	buf   []byte
}

// GetValueState declares (or re-obtains) a value state.
func GetValueState[T any](s KeyedStateStore, d ValueStateDescriptor[T]) (*ValueState[T], error) {
	if err := checkName(StateValue, d.Name, d.Codec != nil); err != nil {
		return nil, err
	}
	raw, err := s.KeyedState(StateSpec{Name: d.Name, Kind: StateValue, ValueCodec: d.Codec.ID(), TTL: d.TTL})
	if err != nil {
		return nil, err
	}
	rv, ok := raw.(rawstate.Value)
	if !ok {
		return nil, fmt.Errorf("state %q: backend returned %T for a value state", d.Name, raw)
	}
	return &ValueState[T]{name: d.Name, store: s, raw: rv, codec: d.Codec, def: d.Default}, nil
}

// SetNamespace scopes the handle to ns.
func (s *ValueState[T]) SetNamespace(ns []byte) { s.raw.SetNamespace(ns) }

// Value returns the current value, or the descriptor's Default.
func (s *ValueState[T]) Value() (T, error) {
	v, _, err := s.Lookup()
	return v, err
}

// Lookup returns the current value and whether one is stored (the Default
// and false otherwise).
func (s *ValueState[T]) Lookup() (T, bool, error) {
	b, ok, err := s.raw.Get()
	if err != nil || !ok {
		return s.def, false, err
	}
	v, err := s.codec.Decode(b)
	if err != nil {
		return s.def, false, decodeErr(s.name, s.store.CurrentKey(), err)
	}
	return v, true, nil
}

// Update stores v.
func (s *ValueState[T]) Update(v T) error {
	b, err := s.codec.Encode(s.buf[:0], v)
	if err != nil {
		return encodeErr(s.name, s.store.CurrentKey(), err)
	}
	s.buf = b
	return s.raw.Put(b)
}

// Clear removes the value.
func (s *ValueState[T]) Clear() error { return s.raw.Clear() }

// ---- List state ----

// ListStateDescriptor declares a ListState.
type ListStateDescriptor[T any] struct {
	Name  string
	Codec Codec[T]
	// TTL applies per element.
	TTL *TTLConfig
}

// ListState holds a list of T per key and namespace. Add is an append (no
// read of the existing list on either backend).
type ListState[T any] struct {
	name  string
	store KeyedStateStore
	raw   rawstate.List
	codec Codec[T]
	buf   []byte
}

// GetListState declares (or re-obtains) a list state.
func GetListState[T any](s KeyedStateStore, d ListStateDescriptor[T]) (*ListState[T], error) {
	if err := checkName(StateList, d.Name, d.Codec != nil); err != nil {
		return nil, err
	}
	raw, err := s.KeyedState(StateSpec{Name: d.Name, Kind: StateList, ValueCodec: d.Codec.ID(), TTL: d.TTL})
	if err != nil {
		return nil, err
	}
	rl, ok := raw.(rawstate.List)
	if !ok {
		return nil, fmt.Errorf("state %q: backend returned %T for a list state", d.Name, raw)
	}
	return &ListState[T]{name: d.Name, store: s, raw: rl, codec: d.Codec}, nil
}

// SetNamespace scopes the handle to ns.
func (s *ListState[T]) SetNamespace(ns []byte) { s.raw.SetNamespace(ns) }

// Add appends v.
func (s *ListState[T]) Add(v T) error {
	b, err := s.codec.Encode(s.buf[:0], v)
	if err != nil {
		return encodeErr(s.name, s.store.CurrentKey(), err)
	}
	s.buf = b
	return s.raw.Append(b)
}

// AddAll appends vs in order.
func (s *ListState[T]) AddAll(vs []T) error {
	for _, v := range vs {
		if err := s.Add(v); err != nil {
			return err
		}
	}
	return nil
}

// Update replaces the list with vs.
func (s *ListState[T]) Update(vs []T) error {
	if err := s.raw.Clear(); err != nil {
		return err
	}
	return s.AddAll(vs)
}

// Range calls fn for each element in order until fn returns false.
func (s *ListState[T]) Range(fn func(v T) bool) error {
	var derr error
	err := s.raw.Range(func(b []byte) bool {
		v, err := s.codec.Decode(b)
		if err != nil {
			derr = decodeErr(s.name, s.store.CurrentKey(), err)
			return false
		}
		return fn(v)
	})
	if err != nil {
		return err
	}
	return derr
}

// Get returns the elements (nil for an empty list).
func (s *ListState[T]) Get() ([]T, error) {
	var out []T
	err := s.Range(func(v T) bool { out = append(out, v); return true })
	return out, err
}

// Clear empties the list.
func (s *ListState[T]) Clear() error { return s.raw.Clear() }

// MergeNamespaces appends the lists of sources to the list of target and
// clears the sources (session window merging).
func (s *ListState[T]) MergeNamespaces(target []byte, sources ...[]byte) error {
	var all [][]byte
	for _, src := range sources {
		s.raw.SetNamespace(src)
		if err := s.raw.Range(func(b []byte) bool { all = append(all, append([]byte(nil), b...)); return true }); err != nil {
			return err
		}
		if err := s.raw.Clear(); err != nil {
			return err
		}
	}
	s.raw.SetNamespace(target)
	for _, b := range all {
		if err := s.raw.Append(b); err != nil {
			return err
		}
	}
	return nil
}

// ---- Map state ----

// MapStateDescriptor declares a MapState.
type MapStateDescriptor[K, V any] struct {
	Name       string
	KeyCodec   Codec[K]
	ValueCodec Codec[V]
	// TTL applies per entry.
	TTL *TTLConfig
}

// MapState holds a map from K to V per key and namespace.
type MapState[K, V any] struct {
	name  string
	store KeyedStateStore
	raw   rawstate.Map
	kc    Codec[K]
	vc    Codec[V]
	kbuf  []byte
	vbuf  []byte
}

// GetMapState declares (or re-obtains) a map state.
func GetMapState[K, V any](s KeyedStateStore, d MapStateDescriptor[K, V]) (*MapState[K, V], error) {
	if err := checkName(StateMap, d.Name, d.KeyCodec != nil, d.ValueCodec != nil); err != nil {
		return nil, err
	}
	raw, err := s.KeyedState(StateSpec{Name: d.Name, Kind: StateMap, KeyCodec: d.KeyCodec.ID(), ValueCodec: d.ValueCodec.ID(), TTL: d.TTL})
	if err != nil {
		return nil, err
	}
	rm, ok := raw.(rawstate.Map)
	if !ok {
		return nil, fmt.Errorf("state %q: backend returned %T for a map state", d.Name, raw)
	}
	return &MapState[K, V]{name: d.Name, store: s, raw: rm, kc: d.KeyCodec, vc: d.ValueCodec}, nil
}

// SetNamespace scopes the handle to ns.
func (s *MapState[K, V]) SetNamespace(ns []byte) { s.raw.SetNamespace(ns) }

func (s *MapState[K, V]) encKey(k K) ([]byte, error) {
	b, err := s.kc.Encode(s.kbuf[:0], k)
	if err != nil {
		return nil, encodeErr(s.name, s.store.CurrentKey(), err)
	}
	s.kbuf = b
	return b, nil
}

// Get returns the value under k and whether it is present.
func (s *MapState[K, V]) Get(k K) (V, bool, error) {
	var zero V
	kb, err := s.encKey(k)
	if err != nil {
		return zero, false, err
	}
	b, ok, err := s.raw.Get(kb)
	if err != nil || !ok {
		return zero, false, err
	}
	v, err := s.vc.Decode(b)
	if err != nil {
		return zero, false, decodeErr(s.name, s.store.CurrentKey(), err)
	}
	return v, true, nil
}

// Contains reports whether k is present.
func (s *MapState[K, V]) Contains(k K) (bool, error) {
	kb, err := s.encKey(k)
	if err != nil {
		return false, err
	}
	_, ok, err := s.raw.Get(kb)
	return ok, err
}

// Put stores v under k.
func (s *MapState[K, V]) Put(k K, v V) error {
	kb, err := s.encKey(k)
	if err != nil {
		return err
	}
	vb, err := s.vc.Encode(s.vbuf[:0], v)
	if err != nil {
		return encodeErr(s.name, s.store.CurrentKey(), err)
	}
	s.vbuf = vb
	return s.raw.Put(kb, vb)
}

// Remove deletes k.
func (s *MapState[K, V]) Remove(k K) error {
	kb, err := s.encKey(k)
	if err != nil {
		return err
	}
	return s.raw.Delete(kb)
}

// Range calls fn for each entry until fn returns false (see rawstate.Map.Range
// for the order). fn must not modify the map.
func (s *MapState[K, V]) Range(fn func(k K, v V) bool) error {
	var derr error
	err := s.raw.Range(func(kb, vb []byte) bool {
		k, err := s.kc.Decode(kb)
		if err != nil {
			derr = decodeErr(s.name, s.store.CurrentKey(), err)
			return false
		}
		v, err := s.vc.Decode(vb)
		if err != nil {
			derr = decodeErr(s.name, s.store.CurrentKey(), err)
			return false
		}
		return fn(k, v)
	})
	if err != nil {
		return err
	}
	return derr
}

// IsEmpty reports whether the map has no entries.
func (s *MapState[K, V]) IsEmpty() (bool, error) {
	empty := true
	err := s.raw.Range(func(_, _ []byte) bool { empty = false; return false })
	return empty, err
}

// Clear removes all entries.
func (s *MapState[K, V]) Clear() error { return s.raw.Clear() }

// ---- Reducing state ----

// ReducingStateDescriptor declares a ReducingState.
type ReducingStateDescriptor[T any] struct {
	Name  string
	Codec Codec[T]
	// Reduce combines the stored value with an added one.
	Reduce func(acc, v T) (T, error)
	TTL    *TTLConfig
}

// ReducingState keeps one T per key and namespace, folding added values with
// Reduce.
type ReducingState[T any] struct {
	v      *ValueState[T]
	reduce func(acc, v T) (T, error)
}

// GetReducingState declares (or re-obtains) a reducing state.
func GetReducingState[T any](s KeyedStateStore, d ReducingStateDescriptor[T]) (*ReducingState[T], error) {
	if err := checkName(StateReducing, d.Name, d.Codec != nil); err != nil {
		return nil, err
	}
	if d.Reduce == nil {
		return nil, fmt.Errorf("declare reducing state %q: Reduce is nil: set the descriptor's Reduce", d.Name)
	}
	raw, err := s.KeyedState(StateSpec{Name: d.Name, Kind: StateReducing, ValueCodec: d.Codec.ID(), TTL: d.TTL})
	if err != nil {
		return nil, err
	}
	rv, ok := raw.(rawstate.Value)
	if !ok {
		return nil, fmt.Errorf("state %q: backend returned %T for a reducing state", d.Name, raw)
	}
	return &ReducingState[T]{v: &ValueState[T]{name: d.Name, store: s, raw: rv, codec: d.Codec}, reduce: d.Reduce}, nil
}

// SetNamespace scopes the handle to ns.
func (s *ReducingState[T]) SetNamespace(ns []byte) { s.v.SetNamespace(ns) }

// Get returns the reduced value and whether anything was added.
func (s *ReducingState[T]) Get() (T, bool, error) { return s.v.Lookup() }

// Add folds v into the state.
func (s *ReducingState[T]) Add(v T) error {
	acc, ok, err := s.v.Lookup()
	if err != nil {
		return err
	}
	if ok {
		if v, err = s.reduce(acc, v); err != nil {
			return fmt.Errorf("reduce state %q: %w", s.v.name, err)
		}
	}
	return s.v.Update(v)
}

// Clear removes the value.
func (s *ReducingState[T]) Clear() error { return s.v.Clear() }

// MergeNamespaces reduces the values of sources into target and clears the
// sources.
func (s *ReducingState[T]) MergeNamespaces(target []byte, sources ...[]byte) error {
	for _, src := range sources {
		s.v.SetNamespace(src)
		v, ok, err := s.v.Lookup()
		if err != nil {
			return err
		}
		if err := s.v.Clear(); err != nil {
			return err
		}
		if ok {
			s.v.SetNamespace(target)
			if err := s.Add(v); err != nil {
				return err
			}
		}
	}
	s.v.SetNamespace(target)
	return nil
}

// ---- Aggregating state ----

// Aggregator folds inputs into an accumulator and produces a result.
type Aggregator[IN, ACC, OUT any] interface {
	CreateAccumulator() ACC
	Add(acc ACC, in IN) ACC
	Result(acc ACC) OUT
	Merge(a, b ACC) ACC
}

// AggregatingStateDescriptor declares an AggregatingState.
type AggregatingStateDescriptor[IN, ACC, OUT any] struct {
	Name       string
	Aggregator Aggregator[IN, ACC, OUT]
	// AccCodec encodes the accumulator, which is what is stored.
	AccCodec Codec[ACC]
	TTL      *TTLConfig
}

// AggregatingState keeps an accumulator per key and namespace.
type AggregatingState[IN, ACC, OUT any] struct {
	v   *ValueState[ACC]
	agg Aggregator[IN, ACC, OUT]
}

// GetAggregatingState declares (or re-obtains) an aggregating state.
func GetAggregatingState[IN, ACC, OUT any](s KeyedStateStore, d AggregatingStateDescriptor[IN, ACC, OUT]) (*AggregatingState[IN, ACC, OUT], error) {
	if err := checkName(StateAggregating, d.Name, d.AccCodec != nil); err != nil {
		return nil, err
	}
	if d.Aggregator == nil {
		return nil, fmt.Errorf("declare aggregating state %q: Aggregator is nil: set the descriptor's Aggregator", d.Name)
	}
	raw, err := s.KeyedState(StateSpec{Name: d.Name, Kind: StateAggregating, ValueCodec: d.AccCodec.ID(), TTL: d.TTL})
	if err != nil {
		return nil, err
	}
	rv, ok := raw.(rawstate.Value)
	if !ok {
		return nil, fmt.Errorf("state %q: backend returned %T for an aggregating state", d.Name, raw)
	}
	return &AggregatingState[IN, ACC, OUT]{v: &ValueState[ACC]{name: d.Name, store: s, raw: rv, codec: d.AccCodec}, agg: d.Aggregator}, nil
}

// SetNamespace scopes the handle to ns.
func (s *AggregatingState[IN, ACC, OUT]) SetNamespace(ns []byte) { s.v.SetNamespace(ns) }

// Add folds in into the accumulator.
func (s *AggregatingState[IN, ACC, OUT]) Add(in IN) error {
	acc, ok, err := s.v.Lookup()
	if err != nil {
		return err
	}
	if !ok {
		acc = s.agg.CreateAccumulator()
	}
	return s.v.Update(s.agg.Add(acc, in))
}

// Get returns the result and whether anything was added.
func (s *AggregatingState[IN, ACC, OUT]) Get() (OUT, bool, error) {
	acc, ok, err := s.v.Lookup()
	if err != nil || !ok {
		var zero OUT
		return zero, false, err
	}
	return s.agg.Result(acc), true, nil
}

// Clear removes the accumulator.
func (s *AggregatingState[IN, ACC, OUT]) Clear() error { return s.v.Clear() }

// MergeNamespaces merges the accumulators of sources into target and clears
// the sources.
func (s *AggregatingState[IN, ACC, OUT]) MergeNamespaces(target []byte, sources ...[]byte) error {
	s.v.SetNamespace(target)
	acc, has, err := s.v.Lookup()
	if err != nil {
		return err
	}
	for _, src := range sources {
		s.v.SetNamespace(src)
		a, ok, err := s.v.Lookup()
		if err != nil {
			return err
		}
		if err := s.v.Clear(); err != nil {
			return err
		}
		if ok {
			if has {
				acc = s.agg.Merge(acc, a)
			} else {
				acc, has = a, true
			}
		}
	}
	s.v.SetNamespace(target)
	if !has {
		return nil
	}
	return s.v.Update(acc)
}
