package runtime

import (
	"errors"
	"sync"
	"time"

	"github.com/flowrt/flow/pkg/api"
)

// store collects what test sinks and operators observe, by subtask.
type store struct {
	mu   sync.Mutex
	recs map[int][]api.Record
	wms  chan int64
}

func newStore() *store { return &store{recs: map[int][]api.Record{}, wms: make(chan int64, 1024)} }

func (s *store) all() map[int][]api.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int][]api.Record{}
	for k, v := range s.recs {
		out[k] = append([]api.Record(nil), v...)
	}
	return out
}

func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.recs {
		n += len(v)
	}
	return n
}

// collectType is a sink that copies records into st, optionally sleeping
// per record (a slow sink).
func collectType(name string, st *store, delay time.Duration) api.OperatorType {
	return api.OperatorType{Name: name, Kind: api.KindSink, NewSink: func(api.Config) (api.Sink, error) {
		return &collectSink{st: st, delay: delay}, nil
	}}
}

type collectSink struct {
	st    *store
	delay time.Duration
	sub   int
}

func (s *collectSink) Open(ctx api.Context) error { s.sub = ctx.Info().SubtaskIndex; return nil }
func (s *collectSink) Write(r api.Record) error {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	c := api.Record{Key: append([]byte(nil), r.Key...), Value: append([]byte(nil), r.Value...), Timestamp: r.Timestamp}
	s.st.mu.Lock()
	s.st.recs[s.sub] = append(s.st.recs[s.sub], c)
	s.st.mu.Unlock()
	return nil
}
func (s *collectSink) Finish() error { return nil }
func (s *collectSink) Close() error  { return nil }

// wmType is an operator that forwards records and reports every watermark
// it processes to st.wms.
func wmType(name string, st *store) api.OperatorType {
	return api.OperatorType{Name: name, Kind: api.KindOperator, NewOperator: func(api.Config) (api.Operator, error) {
		return &wmOp{st: st}, nil
	}}
}

type wmOp struct{ st *store }

func (o *wmOp) Open(api.Context) error                              { return nil }
func (o *wmOp) ProcessRecord(r api.Record, out api.Collector) error { out.Collect(r); return nil }
func (o *wmOp) Finish(api.Collector) error                          { return nil }
func (o *wmOp) Close() error                                        { return nil }
func (o *wmOp) ProcessWatermark(ts int64, _ api.Collector) error {
	o.st.wms <- ts
	return nil
}

// cmd drives a ctlSource.
type cmd struct {
	rec  *api.Record
	wm   int64
	idle bool
	end  bool
}

// ctlType is a source whose subtask i obeys commands from chans[i].
func ctlType(name string, chans []chan cmd) api.OperatorType {
	return api.OperatorType{Name: name, Kind: api.KindSource, NewSource: func(api.Config) (api.Source, error) {
		return &ctlSource{chans: chans}, nil
	}}
}

type ctlSource struct {
	chans []chan cmd
	ch    chan cmd
}

func (s *ctlSource) Open(ctx api.Context) error {
	i := ctx.Info().SubtaskIndex
	if i >= len(s.chans) {
		return errors.New("no command channel for subtask")
	}
	s.ch = s.chans[i]
	return nil
}

func (s *ctlSource) Next(out api.SourceOutput) (api.SourceStatus, error) {
	select {
	case c := <-s.ch:
		switch {
		case c.end:
			return api.SourceStatus{End: true}, nil
		case c.idle:
			out.MarkIdle()
		case c.rec != nil:
			out.Collect(*c.rec)
		default:
			out.EmitWatermark(c.wm)
		}
		return api.SourceStatus{}, nil
	default:
		return api.SourceStatus{WaitUntil: time.Now().Add(2 * time.Millisecond)}, nil
	}
}

func (s *ctlSource) Position() ([]byte, error) { return nil, nil }
func (s *ctlSource) Restore([]byte) error      { return nil }
func (s *ctlSource) Close() error              { return nil }

// panicType is an operator that panics on the record whose value equals v.
func panicType(name, v string) api.OperatorType {
	return api.OperatorType{Name: name, Kind: api.KindOperator, NewOperator: func(api.Config) (api.Operator, error) {
		return &panicOp{v: v}, nil
	}}
}

type panicOp struct{ v string }

func (o *panicOp) Open(api.Context) error { return nil }
func (o *panicOp) ProcessRecord(r api.Record, out api.Collector) error {
	if string(r.Value) == o.v {
		panic("boom")
	}
	out.Collect(r)
	return nil
}
func (o *panicOp) Finish(api.Collector) error { return nil }
func (o *panicOp) Close() error               { return nil }
