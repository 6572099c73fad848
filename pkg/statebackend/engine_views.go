package statebackend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
)

// This file holds canonical iteration (snapshots), ingest (restores) and
// copy-on-write point-in-time views of the engine's state.

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
