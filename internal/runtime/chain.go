package runtime

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// vertexInfo is what the task knows about one operator of its chain.
type vertexInfo struct {
	v       *jobgraphv1.Vertex
	id      string
	skip    bool // on_error: skip
	skipped prometheus.Counter
	// in counts the records the operator received (published through
	// metrics by the task, see publishOperators).
	in      int64
	metrics *operatorMetrics
	// state is the operator's state (operator store, keyed backend).
	state *operatorState
	// sides are the side outputs the operator's type declares; sideOut
	// the collectors of those the task's outputs carry (the chain's tail
	// only: a side-output edge is never chained). A declared side output
	// without edges drops its records.
	sides   []string
	sideOut map[string]api.Collector
}

// uid is the operator's uid, or its id when the graph sets none.
func (vi *vertexInfo) uid() string {
	if u := vi.v.GetUid(); u != "" {
		return u
	}
	return vi.id
}

// recordError is implemented by errors a source or sink returns for one bad
// record (a malformed input line, a value the sink cannot encode): with
// on_error "skip" the runtime drops the record and continues. Errors from
// Operator.ProcessRecord are always record errors.
type recordError interface {
	error
	RecordError() bool
}

// opLink runs one operator of the chain: it is the Collector the previous
// element emits into.
type opLink struct {
	t    *task
	vi   *vertexInfo
	op   api.Operator
	wm   api.WatermarkHandler
	next api.Collector

	// Keyed operators: the backend (also in vi.state), the timer handler
	// and fire, the callback the backend fires timers through (made once,
	// so firing allocates nothing). swept: the idle TTL sweep finished a
	// round since the last input.
	keyed  statebackend.Backend
	timers api.TimerHandler
	fire   func(api.Timer) error
	swept  bool
}

// Collect implements api.Collector.
func (l *opLink) Collect(r api.Record) {
	if l.t.err != nil {
		return
	}
	l.vi.in++
	if l.keyed != nil {
		l.keyed.SetCurrentKey(r.Key, keygroup.Assign(r.Key, l.t.maxPar))
	}
	defer l.t.recoverUser(l.vi)
	if err := l.op.ProcessRecord(r, l.next); err != nil {
		l.t.recordFailed(l.vi, err, true)
	}
}

// opLink2 feeds the second input of a two-input head operator.
type opLink2 struct {
	*opLink
	op2 api.TwoInputOperator
	// unkeyed: the second input is not hash-partitioned (broadcast):
	// its records have no key, and keyed state accesses and timers fail
	// (key group -1 is in no subtask's range) rather than land under an
	// empty key.
	unkeyed bool
}

// Collect implements api.Collector.
func (l *opLink2) Collect(r api.Record) {
	if l.t.err != nil {
		return
	}
	l.vi.in++
	if l.keyed != nil {
		if l.unkeyed {
			l.keyed.SetCurrentKey(nil, -1)
		} else {
			l.keyed.SetCurrentKey(r.Key, keygroup.Assign(r.Key, l.t.maxPar))
		}
	}
	defer l.t.recoverUser(l.vi)
	if err := l.op2.ProcessRecord2(r, l.next); err != nil {
		l.t.recordFailed(l.vi, err, true)
	}
}

// sinkLink writes records into a sink at the chain's tail.
type sinkLink struct {
	t    *task
	vi   *vertexInfo
	sink api.Sink
}

// Collect implements api.Collector.
func (l *sinkLink) Collect(r api.Record) {
	if l.t.err != nil {
		return
	}
	l.vi.in++
	defer l.t.recoverUser(l.vi)
	if err := l.sink.Write(r); err != nil {
		var re recordError
		l.t.recordFailed(l.vi, err, asRecordError(err, &re))
		return
	}
	l.t.metrics.out++
}

func asRecordError(err error, re *recordError) bool {
	for e := err; e != nil; {
		if x, ok := e.(recordError); ok && x.RecordError() {
			*re = x
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// recoverUser turns a panic in user code into a task failure naming the
// operator. It must be deferred directly.
func (t *task) recoverUser(vi *vertexInfo) {
	if p := recover(); p != nil {
		t.fail(fmt.Errorf("%s: %s: panic: %v", t.opName(vi), t.position(), p))
	}
}

// recordFailed handles an error caused by one record: skip it (counting it)
// when the operator's on_error is skip and the error is a record error,
// otherwise fail the task.
func (t *task) recordFailed(vi *vertexInfo, err error, isRecordErr bool) {
	if isRecordErr && vi.skip {
		vi.skipped.Inc()
		return
	}
	t.fail(fmt.Errorf("%s: %s: %w", t.opName(vi), t.position(), err))
}

func (t *task) opName(vi *vertexInfo) string {
	return fmt.Sprintf("operator %q (subtask %d of %d)", vi.id, t.subtask, t.parallelism)
}

// position describes the record being processed, for error messages.
func (t *task) position() string {
	if t.inTimer {
		return fmt.Sprintf("%v timer at %d for key %q", t.timerAt.Domain, t.timerAt.Timestamp, t.timerAt.Key)
	}
	if t.inWM {
		return fmt.Sprintf("watermark %d", t.lastWM)
	}
	if t.curChannel < 0 {
		return fmt.Sprintf("record %d from the source", t.curRecord)
	}
	return fmt.Sprintf("record %d from channel %d", t.curRecord, t.curChannel)
}
