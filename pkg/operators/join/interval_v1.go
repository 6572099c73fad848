package join

import (
	"encoding/binary"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/rawstate"
)

// Layout 1 of the interval join's state, written before the rows list of
// layout 2: map states "left" and "right" per key, timestamp (int64-ordered)
// -> the rows of that timestamp (uvarint-framed records), and one
// event-time timer per row at its expiry with namespace "l" or "r".
//
// A job restored from a snapshot of layout 1 reads both: new rows go to
// the current layout, probes also search the layout-1 maps, and the layout-1 timers
// still drop their rows, so the old state drains as the watermark passes.

// v1Rows is the layout-1 state of a restored job.
type v1Rows struct {
	left, right rawstate.Map
	k           [8]byte
	// p is the probe in progress; probeFn is its callback, made once.
	p       v1Probe
	probeFn func(k, v []byte) bool
}

type v1Probe struct {
	o      *Interval
	r      api.Record
	out    api.Collector
	isLeft bool
	lo, hi int64
	err    error
}

// stateLister is implemented by the runtime's keyed backends: the states
// declared or restored so far.
type stateLister interface {
	States() []api.StateSpec
}

// hasV1State reports whether the restored state has the layout-1 maps (or
// the store cannot tell, in which case they are read too).
func hasV1State(store api.KeyedStateStore) bool {
	return hasState(store, "left", api.StateMap) || hasState(store, "right", api.StateMap)
}

// hasState reports whether the store has a state of that name and kind
// (restored or declared), or cannot tell.
func hasState(store api.KeyedStateStore, name string, kind api.StateKind) bool {
	l, ok := store.(stateLister)
	if !ok {
		return true
	}
	for _, s := range l.States() {
		if s.Kind == kind && s.Name == name {
			return true
		}
	}
	return false
}

func openV1(store api.KeyedStateStore) (*v1Rows, error) {
	v := &v1Rows{}
	v.probeFn = v.visit
	var err error
	if v.left, err = mapState(store, "left", nil); err != nil {
		return nil, err
	}
	if v.right, err = mapState(store, "right", nil); err != nil {
		return nil, err
	}
	return v, nil
}

// visit joins the rows of one layout-1 entry with p.r when its timestamp
// is in [p.lo, p.hi].
func (v *v1Rows) visit(k, b []byte) bool {
	p := &v.p
	t, ok := decTS(k)
	if !ok {
		p.err = errCorrupt
		return false
	}
	if t < p.lo || t > p.hi {
		return true
	}
	ts := max(p.r.Timestamp, t)
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			p.err = errCorrupt
			return false
		}
		row := b[w : w+int(n)]
		b = b[w+int(n):]
		if p.isLeft {
			p.o.e.emit(p.out, p.r.Key, p.r.Value, row, ts)
		} else {
			p.o.e.emit(p.out, p.r.Key, row, p.r.Value, ts)
		}
	}
	return true
}

// probe joins r with the layout-1 rows of the other side.
func (v *v1Rows) probe(o *Interval, r api.Record, out api.Collector, isLeft bool, lo, hi int64) error {
	other := v.left
	if isLeft {
		other = v.right
	}
	v.p = v1Probe{o: o, r: r, out: out, isLeft: isLeft, lo: lo, hi: hi}
	err := other.Range(v.probeFn)
	if err == nil {
		err = v.p.err
	}
	v.p = v1Probe{}
	return err
}

// onTimer drops the layout-1 rows of a fired layout-1 timer.
func (v *v1Rows) onTimer(o *Interval, t api.Timer) error {
	if t.Namespace[0] == nsLeft[0] {
		return v.left.Delete(encTS(&v.k, t.Timestamp+o.lower-1))
	}
	return v.right.Delete(encTS(&v.k, t.Timestamp-o.upper-1))
}
