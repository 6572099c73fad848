package runtime

import (
	"fmt"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// maxEventSize bounds the bytes a watermark or status frame takes.
const maxEventSize = 1 + 10

// subBuffer is the buffer being filled for one subpartition.
type subBuffer struct {
	w    frameWriter
	open bool
}

// output serializes the chain's records into one result partition (one
// downstream task vertex), choosing subpartitions by the edge's partitioning.
// It is an api.Collector at the tail of the chain.
type output struct {
	t    *task
	part *exchange.ResultPartition
	mode jobgraphv1.Partitioning
	// side is the side output of the tail operator the output carries
	// ("": the main output).
	side string
	subs []subBuffer
	rr   int

	// hash partitioning
	keyBy      *expression.Program
	keyField   string      // set when keyBy is a plain top-level field: no JSON decoding
	keyVertex  *vertexInfo // the chain's last operator: keyBy errors are its record errors
	keyTarget  string      // the downstream head whose keyBy this is
	env        *expression.Env
	keyBuf     []byte
	maxPar     int
	downstream int
	// route maps a key group to its downstream subtask
	// (keygroup.OperatorIndex), built on first use; kgMask is maxPar-1 when
	// maxPar is a power of two (the default 128), so the key group is a mask
	// instead of a division.
	route     []int32
	kgMask    uint32
	keyPrefix []byte // {"<keyField>":" for leadingStringKey, built on first use
}

// leadingStringKey is the fastest keyBy path: when the JSON value starts
// with {"<keyField>":"<string without escapes>", the key is that string's
// bytes, returned as a slice of value (no copy, no scan of the rest). It
// gives exactly what expression.AppendFieldKey would (the first occurrence
// of the field counts); ok is false for any other shape, which then takes
// the general paths.
func (o *output) leadingStringKey(value []byte) (key []byte, ok bool) {
	if o.keyPrefix == nil {
		o.keyPrefix = []byte(`-`) // never matches a JSON object
		if plainJSONName(o.keyField) {
			o.keyPrefix = []byte(`{"` + o.keyField + `":"`)
		}
	}
	p := o.keyPrefix
	if len(value) <= len(p) || string(value[:len(p)]) != string(p) {
		return nil, false
	}
	rest := value[len(p):]
	for i, c := range rest {
		switch c {
		case '"':
			return rest[:i:i], true
		case '\\':
			return nil, false
		}
	}
	return nil, false
}

// plainJSONName reports whether s appears verbatim between quotes in JSON
// (no quote, backslash or control character to escape).
func plainJSONName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 {
			return false
		}
	}
	return true
}

// subpartitionOf returns the downstream subtask owning key, exactly as
// keygroup.OperatorIndex(keygroup.Assign(key, maxPar), maxPar, downstream),
// without a division per record.
func (o *output) subpartitionOf(key []byte) int {
	if o.route == nil {
		o.route = make([]int32, o.maxPar)
		for kg := range o.route {
			o.route[kg] = int32(keygroup.OperatorIndex(kg, o.maxPar, o.downstream))
		}
		if o.maxPar&(o.maxPar-1) == 0 {
			o.kgMask = uint32(o.maxPar - 1)
		}
	}
	h := keygroup.Murmur3(key)
	if o.kgMask != 0 || o.maxPar == 1 {
		return int(o.route[h&o.kgMask])
	}
	return int(o.route[h%uint32(o.maxPar)])
}

func newOutput(t *task, part *exchange.ResultPartition, mode jobgraphv1.Partitioning, subpartitions int) *output {
	o := &output{t: t, part: part, mode: mode, subs: make([]subBuffer, subpartitions)}
	o.rr = t.subtask % subpartitions
	return o
}

// Collect implements api.Collector.
func (o *output) Collect(r api.Record) {
	if o.t.err != nil {
		return
	}
	switch o.mode {
	case jobgraphv1.Partitioning_PARTITIONING_HASH:
		sub, ok := o.keyOf(&r)
		if !ok {
			return
		}
		o.write(sub, &r)
	case jobgraphv1.Partitioning_PARTITIONING_BROADCAST:
		for i := range o.subs {
			o.write(i, &r)
		}
	case jobgraphv1.Partitioning_PARTITIONING_REBALANCE:
		o.write(o.rr, &r)
		o.rr++
		if o.rr == len(o.subs) {
			o.rr = 0
		}
	default: // forward
		o.write(0, &r)
	}
	o.t.metrics.out++
}

// keyOf evaluates the key expression, sets r.Key and returns the owning
// downstream subtask.
func (o *output) keyOf(r *api.Record) (int, bool) {
	if o.keyField != "" {
		if k, ok := o.leadingStringKey(r.Value); ok {
			r.Key = k
			return o.subpartitionOf(k), true
		}
		if k, ok := expression.AppendFieldKey(o.keyBuf[:0], r.Value, o.keyField); ok {
			if cap(k) != cap(o.keyBuf) {
				o.keyBuf = k // grew; otherwise same array (skip the pointer write)
			}
			r.Key = k
			return o.subpartitionOf(k), true
		}
	}
	if err := o.env.Reset(r.Value, r.Timestamp, r.Key); err != nil {
		o.t.recordFailed(o.keyVertex, fmt.Errorf("keyBy %q of %q: %w", o.keyBy.Source(), o.keyTarget, err), true)
		return 0, false
	}
	k, err := o.keyBy.EvalKey(o.keyBuf[:0], o.env)
	if err != nil { // also a missing or null key: a record error, never the key "null"
		o.t.recordFailed(o.keyVertex, fmt.Errorf("keyBy of %q: %w", o.keyTarget, err), true)
		return 0, false
	}
	o.keyBuf = k
	r.Key = o.keyBuf
	return o.subpartitionOf(o.keyBuf), true
}

// buffer returns the subpartition's open buffer with room for need bytes,
// emitting a full one and requesting a new one as needed (which may block:
// backpressure).
func (o *output) buffer(sub int, need int) *frameWriter {
	sb := &o.subs[sub]
	if sb.open && len(sb.w.buf) > 0 && len(sb.w.buf)+need > cap(sb.w.buf) {
		o.emit(sub)
	}
	if !sb.open {
		buf, ok := o.part.TryRequestBuffer()
		if !ok {
			o.t.metrics.publish() // counts stay current while blocked
			start := time.Now()
			var err error
			buf, err = o.part.RequestBuffer(o.t.ctx)
			o.t.metrics.bpNs += time.Since(start).Nanoseconds()
			if err != nil {
				o.t.fail(fmt.Errorf("request output buffer for %q: %w", o.part.ID().DownstreamTask, err))
				return nil
			}
		}
		sb.w.reset(buf)
		sb.open = true
		o.t.bufferOpened()
	}
	return &sb.w
}

func (o *output) write(sub int, r *api.Record) {
	w := o.buffer(sub, recordSize(r))
	if w == nil {
		return
	}
	w.appendRecord(r)
}

func (o *output) emit(sub int) {
	sb := &o.subs[sub]
	if !sb.open {
		return
	}
	sb.open = false
	o.t.metrics.bytesOut += int64(len(sb.w.buf))
	if err := o.part.Emit(sub, sb.w.buf); err != nil {
		o.t.fail(fmt.Errorf("emit to %q subpartition %d: %w", o.part.ID().DownstreamTask, sub, err))
	}
	sb.w.buf = nil
}

// watermark appends a watermark to every subpartition.
func (o *output) watermark(ts int64) {
	for i := range o.subs {
		if w := o.buffer(i, maxEventSize); w != nil {
			w.appendWatermark(ts)
		}
	}
}

// status appends a stream status to every subpartition.
func (o *output) status(idle bool) {
	for i := range o.subs {
		if w := o.buffer(i, maxEventSize); w != nil {
			w.appendStatus(idle)
		}
	}
}

// flush emits every open buffer.
func (o *output) flush() {
	for i := range o.subs {
		if o.subs[i].open && len(o.subs[i].w.buf) > 0 {
			o.emit(i)
		}
	}
}

// fanout sends records to several outputs.
type fanout []api.Collector

func (f fanout) Collect(r api.Record) {
	for _, c := range f {
		c.Collect(r)
	}
}

// joinCollectors adds c to prev (nil: none yet), making a fanout of two or
// more.
func joinCollectors(prev api.Collector, c api.Collector) api.Collector {
	switch p := prev.(type) {
	case nil:
		return c
	case fanout:
		return append(p, c)
	}
	return fanout{prev, c}
}

// discard drops records (a chain tail without outputs).
type discard struct{}

func (discard) Collect(api.Record) {}
