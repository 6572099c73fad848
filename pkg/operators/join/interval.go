package join

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/rawstate"
)

// State layout of the interval join, version 3:
//
//   - list state "rows3" (codec join-rows-v3): per key and side (the
//     state namespace: one byte, 0 left, 1 right), the buffered rows of
//     that side in arrival order, each element
//     side (1 byte: 0 left, 1 right) | timestamp (8, big-endian) | record;
//   - event-time timers with namespace "c": the cleanup of the key's rows.
//
// A record reads only the other side's rows (it can match nothing else)
// and appends itself to its own side's list without reading it: a key
// with many rows of one side (a hot auction's bids) costs its records
// nothing for that side.
//
// A row is useless (it can match no future record of the other side) once
// the watermark reaches its expiry: ts-lower+1 for a left row, ts+upper+1
// for a right one. Every probe of a side scans its rows, skips the useless
// ones and counts them; when they are more than half of at least pruneMin
// rows, the side is rewritten without them, so the probed rows of a busy
// key stay within about twice those that can still match. A key holding
// rows always has a cleanup timer pending: the first at its first row's
// expiry, the next at the expiry of its newest live row, each rounded up
// to a multiple of cleanupDelay; it scans both sides, rewrites a side when
// most of its rows are useless and drops it when all are, so the rows of a
// side nobody probes (or a key that goes quiet) are gone at most
// cleanupDelay after the watermark passes them: one timer per key and
// cleanupDelay at most, not one per row. Whether a key has its timer is
// remembered in memory (a bounded set; forgetting costs one redundant
// timer registration, never a missing timer).
//
// Version 2 (list state "rows", both sides of a key in one list, same
// elements) is still read: a job restored from it probes the old list too
// and its cleanup timers drain it. Version 1 (map states "left" and
// "right", timestamp -> rows, one timer per row with namespace "l" or "r")
// too: see interval_v1.go.

const (
	rowsV3Codec = "join-rows-v3"
	rowsV3State = "rows3"
	rowsV2Codec = "join-rows-v2"
	rowsV2State = "rows"

	sideLeft  byte = 0
	sideRight byte = 1

	// pruneMin is the number of rows below which a probe does not rewrite
	// a side's rows to drop the useless ones (the cleanup timer does).
	pruneMin = 8

	// maxTimed bounds the set of keys known to have a cleanup timer.
	maxTimed = 1 << 16

	defaultCleanupDelay = time.Second
)

// nsSide are the state namespaces of the rows of each side.
var nsSide = [2][]byte{{sideLeft}, {sideRight}}

var nsCleanup = []byte("c")

// IntervalType returns the interval-join operator type.
func IntervalType() api.OperatorType {
	return api.OperatorType{
		Name: IntervalName, Kind: api.KindOperator, Keyed: true, Inputs: 2,
		Doc: "Event-time interval join of two keyed inputs: a left record a and a right record b of the same key join when " +
			"b.ts+lower <= a.ts <= b.ts+upper; emits {\"left\":a,\"right\":b} with the larger timestamp. Rows are dropped once the " +
			"watermark shows they can match nothing more (at the latest cleanupDelay later); records behind the watermark are dropped.",
		Fields: []api.Field{
			{Name: "lower", Type: api.TypeDuration, Required: true, Doc: "Lower bound of a.ts - b.ts (may be negative), e.g. -5s."},
			{Name: "upper", Type: api.TypeDuration, Required: true, Doc: "Upper bound of a.ts - b.ts (at least lower), e.g. 10s."},
			{Name: "cleanupDelay", Type: api.TypeDuration, Default: defaultCleanupDelay, Validate: func(v any) error {
				if v.(time.Duration) < time.Millisecond {
					return errors.New("must be at least 1ms")
				}
				return nil
			}, Doc: "How long past the watermark the rows of a key that receives nothing may stay in state: each such key is swept by " +
				"one timer per cleanupDelay (rows of busy keys are dropped as they are probed). Smaller: less state, more timers."},
		},
		Example: "- id: joined\n  type: interval-join\n  inputs:\n    - {from: clicks, keyBy: user}\n    - {from: views, keyBy: user_id}\n  config: {lower: -5s, upper: 10s}\n",
		NewOperator: func(cfg api.Config) (api.Operator, error) {
			lo, hi := cfg.Duration("lower").Milliseconds(), cfg.Duration("upper").Milliseconds()
			if lo > hi {
				return nil, fmt.Errorf("interval-join: lower %v is above upper %v: the interval would be empty, swap them", cfg.Duration("lower"), cfg.Duration("upper"))
			}
			return &Interval{lower: lo, upper: hi, cleanup: cfg.Duration("cleanupDelay").Milliseconds()}, nil
		},
	}
}

// Interval is the interval-join operator.
type Interval struct {
	base
	lower, upper int64
	cleanup      int64 // ms: the grid of the cleanup timers
	// offs[side] is added to a row's timestamp to get its expiry.
	offs [2]int64
	rows rawstate.List // layout 3
	v2   rawstate.List // non-nil when the state may hold layout-2 rows
	v1   *v1Rows       // non-nil when the state may hold layout-1 rows
	// timed: keys that have a cleanup timer pending (a hint: a key not in
	// it registers one, which is idempotent).
	timed  map[string]struct{}
	timers api.TimerService
	late   prometheus.Counter
	e      emitter
	elem   []byte // the element being appended
	keep   []byte // live rows being rewritten, uvarint-framed
	// s is the scan in progress; visitFn and keepFn are o.visit and
	// o.keepLive, made once so that scanning allocates nothing.
	s       scan
	visitFn func(el []byte) bool
	keepFn  func(el []byte) bool
}

// scan is one pass over a key's rows.
type scan struct {
	r       api.Record
	out     api.Collector
	probe   bool // emit the matches of r
	side    byte // r's side
	lo, hi  int64
	wm      int64
	cut     [2]int64 // [side]: a row at or before cut[side] is useless at wm
	n       int      // rows seen
	expired int      // useless rows seen
	maxLive int64    // largest expiry among the others
	err     error
}

var _ api.TwoInputOperator = (*Interval)(nil)
var _ api.TimerHandler = (*Interval)(nil)

// addSat is a+b, saturated.
func addSat(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}

// expiry is the watermark at which a row of side at ts is useless.
func (o *Interval) expiry(side byte, ts int64) int64 {
	return addSat(ts, o.offs[side&1])
}

// newScan starts a scan at watermark wm.
func (o *Interval) newScan(wm int64) scan {
	s := scan{wm: wm, maxLive: math.MinInt64}
	for i, off := range o.offs {
		s.cut[i] = addSat(wm, -off)
		if wm == math.MinInt64 {
			s.cut[i] = math.MinInt64 // nothing is useless before the first watermark
		}
	}
	return s
}

// cleanupAt rounds an expiry up to the cleanup grid.
func (o *Interval) cleanupAt(exp int64) int64 {
	q := exp / o.cleanup
	if q*o.cleanup < exp {
		q++
	}
	if q > math.MaxInt64/o.cleanup {
		return math.MaxInt64
	}
	return q * o.cleanup
}

func appendElem(dst []byte, side byte, ts int64, row []byte) []byte {
	dst = append(dst, side)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	return append(dst, row...)
}

// visit counts one row and, when probing, joins it with s.r if it matches.
func (o *Interval) visit(el []byte) bool {
	s := &o.s
	if len(el) < 9 || el[0] > sideRight {
		s.err = errCorrupt
		return false
	}
	side, ts := el[0], int64(binary.BigEndian.Uint64(el[1:9]))
	s.n++
	if ts <= s.cut[side] {
		s.expired++
		return true
	}
	if !s.probe {
		s.maxLive = max(s.maxLive, o.expiry(side, ts))
		return true
	}
	if side != s.side && ts >= s.lo && ts <= s.hi {
		t := max(s.r.Timestamp, ts)
		if s.side == sideLeft {
			o.e.emit(s.out, s.r.Key, s.r.Value, el[9:], t)
		} else {
			o.e.emit(s.out, s.r.Key, el[9:], s.r.Value, t)
		}
	}
	return true
}

// keepLive copies a row that is still useful at s.wm into o.keep.
func (o *Interval) keepLive(el []byte) bool {
	if len(el) < 9 || el[0] > sideRight {
		o.s.err = errCorrupt
		return false
	}
	if int64(binary.BigEndian.Uint64(el[1:9])) > o.s.cut[el[0]] {
		o.keep = appendRow(o.keep, el)
	}
	return true
}

// run scans the current key's rows in list with fn and resets o.s.
func (o *Interval) run(list rawstate.List, fn func([]byte) bool) (scan, error) {
	err := list.Range(fn)
	s := o.s
	o.s = scan{}
	if err == nil {
		err = s.err
	}
	return s, err
}

// rewrite replaces the current key's rows in list with those still useful
// at wm and returns how many remain.
func (o *Interval) rewrite(list rawstate.List, wm int64) (int, error) {
	o.keep = o.keep[:0]
	o.s = o.newScan(wm)
	if _, err := o.run(list, o.keepFn); err != nil {
		return 0, err
	}
	if err := list.Clear(); err != nil {
		return 0, err
	}
	n := 0
	var aerr error
	if err := eachRow(o.keep, func(el []byte) {
		if aerr == nil {
			aerr = list.Append(el)
			n++
		}
	}); err != nil {
		return 0, err
	}
	return n, aerr
}

// Open declares the rows list (and the layout-1 maps if they were restored).
func (o *Interval) Open(ctx api.Context) error {
	o.visitFn, o.keepFn = o.visit, o.keepLive
	o.offs = [2]int64{addSat(1, -o.lower), addSat(o.upper, 1)}
	if o.cleanup <= 0 {
		o.cleanup = defaultCleanupDelay.Milliseconds()
	}
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.late, err = lateCounter(ctx); err != nil {
		return err
	}
	if o.timers, err = api.TimerServiceOf(ctx); err != nil {
		return err
	}
	o.timed = make(map[string]struct{})
	if o.rows, err = listState(store, rowsV3State, rowsV3Codec); err != nil {
		return err
	}
	if hasState(store, rowsV2State, api.StateList) {
		if o.v2, err = listState(store, rowsV2State, rowsV2Codec); err != nil {
			return err
		}
	}
	if hasV1State(store) {
		if o.v1, err = openV1(store); err != nil {
			return err
		}
	}
	return nil
}

// ProcessRecord joins a left record with the buffered right rows.
func (o *Interval) ProcessRecord(r api.Record, out api.Collector) error {
	return o.process(r, out, sideLeft)
}

// ProcessRecord2 joins a right record with the buffered left rows.
func (o *Interval) ProcessRecord2(r api.Record, out api.Collector) error {
	return o.process(r, out, sideRight)
}

func (o *Interval) process(r api.Record, out api.Collector, side byte) error {
	ts := r.Timestamp
	if ts == api.NoTimestamp {
		return ErrNoTimestamp
	}
	wm := o.timers.CurrentWatermark()
	if wm != math.MinInt64 && ts < wm {
		o.late.Inc()
		return nil
	}
	lo, hi := addSat(ts, -o.upper), addSat(ts, -o.lower) // matching right timestamps of a left row
	if side == sideRight {
		lo, hi = addSat(ts, o.lower), addSat(ts, o.upper)
	}
	if o.v1 != nil {
		if err := o.v1.probe(o, r, out, side == sideLeft, lo, hi); err != nil {
			return err
		}
	}
	if o.v2 != nil {
		o.s = o.newScan(wm)
		o.s.r, o.s.out, o.s.probe, o.s.side, o.s.lo, o.s.hi = r, out, true, side, lo, hi
		s, err := o.run(o.v2, o.visitFn)
		if err != nil {
			return err
		}
		if s.n > 0 && s.expired == s.n {
			if err := o.v2.Clear(); err != nil {
				return err
			}
		}
	}
	other := nsSide[side^1]
	o.rows.SetNamespace(other)
	o.s = o.newScan(wm)
	o.s.r, o.s.out, o.s.probe, o.s.side, o.s.lo, o.s.hi = r, out, true, side, lo, hi
	s, err := o.run(o.rows, o.visitFn)
	if err != nil {
		return err
	}
	if s.n >= pruneMin && 2*s.expired > s.n {
		if _, err := o.rewrite(o.rows, wm); err != nil {
			return err
		}
	}
	exp := o.expiry(side, ts)
	if exp <= wm {
		return nil // it can match no later record (lower > 0 or upper < 0)
	}
	o.rows.SetNamespace(nsSide[side])
	o.elem = appendElem(o.elem[:0], side, ts, r.Value)
	if err := o.rows.Append(o.elem); err != nil {
		return err
	}
	if _, ok := o.timed[string(r.Key)]; ok {
		return nil
	}
	if err := o.timers.RegisterEventTimeTimer(o.cleanupAt(exp), nsCleanup); err != nil {
		return err
	}
	o.markTimed(r.Key)
	return nil
}

func (o *Interval) markTimed(key []byte) {
	if len(o.timed) >= maxTimed {
		clear(o.timed) // forgetting costs redundant registrations only
	}
	o.timed[string(key)] = struct{}{}
}

// OnTimer drops the rows the watermark made useless.
func (o *Interval) OnTimer(t api.Timer, _ api.Collector) error {
	if len(t.Namespace) != 1 {
		return nil
	}
	switch t.Namespace[0] {
	case nsLeft[0], nsRight[0]:
		if o.v1 == nil {
			return nil
		}
		return o.v1.onTimer(o, t)
	case nsCleanup[0]:
	default:
		return nil
	}
	wm := max(o.timers.CurrentWatermark(), t.Timestamp)
	delete(o.timed, string(t.Key))
	maxLive, live := int64(math.MinInt64), false
	sweep := func(list rawstate.List) error {
		o.s = o.newScan(wm)
		s, err := o.run(list, o.visitFn)
		if err != nil || s.n == 0 {
			return err
		}
		if s.expired == s.n {
			return list.Clear()
		}
		if 2*s.expired > s.n {
			// Rewriting for a few useless rows would copy the rows at every
			// cleanupDelay: like a probe, wait for a majority.
			if _, err := o.rewrite(list, wm); err != nil {
				return err
			}
		}
		maxLive, live = max(maxLive, s.maxLive), true
		return nil
	}
	for _, ns := range nsSide {
		o.rows.SetNamespace(ns)
		if err := sweep(o.rows); err != nil {
			return err
		}
	}
	if o.v2 != nil {
		if err := sweep(o.v2); err != nil {
			return err
		}
	}
	if !live {
		return nil
	}
	// The timer sweeps the sides nobody probes and keys that go quiet
	// (probes prune the rest): the next one is due when all the rows left
	// are useless.
	if err := o.timers.RegisterEventTimeTimer(o.cleanupAt(maxLive), nsCleanup); err != nil {
		return err
	}
	o.markTimed(t.Key)
	return nil
}
