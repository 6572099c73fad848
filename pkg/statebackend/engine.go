package statebackend

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/rawstate"
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
func (e *Engine) KeyedState(spec api.StateSpec) (rawstate.State, error) {
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
