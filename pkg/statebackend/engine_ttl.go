package statebackend

import (
	"encoding/binary"
	"fmt"

	"github.com/flowrt/flow/pkg/api"
)

// This file holds the engine's TTL sweeps: expired entries removed per key
// group, a bounded number of key groups at a time.

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
