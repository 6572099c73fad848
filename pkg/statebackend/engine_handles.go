package statebackend

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"

	"github.com/flowrt/flow/pkg/api"
)

// This file holds the engine's raw state handles: value, list and map
// state over the Store, with TTL stamps.

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
