// Package blackhole is the `blackhole` sink: it discards records and only
// counts them (flow_blackhole_records_total), for benchmarks and tests.
package blackhole

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name.
const Name = "blackhole"

func init() { api.Default.MustRegister(Type()) }

// Type returns the blackhole sink type (registered in api.Default).
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindSink,
		Doc:     "Discards every record; counts them in flow_blackhole_records_total.",
		Example: "- id: sink\n  type: blackhole\n  inputs: [gen]\n",
		NewSink: func(api.Config) (api.Sink, error) { return &Sink{}, nil },
	}
}

// Sink is one blackhole subtask.
type Sink struct {
	// Count is the number of records written (read it after the task ended).
	Count   int64
	counter prometheus.Counter
	pending int64
}

// Open implements api.Sink.
func (s *Sink) Open(ctx api.Context) error {
	s.counter = prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_blackhole_records_total", Help: "Records discarded by a blackhole sink."})
	if err := ctx.Metrics().Register(s.counter); err != nil {
		s.counter = nil // metrics are best effort: a duplicate registration must not fail the job
	}
	return nil
}

// Write implements api.Sink.
func (s *Sink) Write(api.Record) error {
	s.Count++
	s.pending++
	if s.pending >= 1024 {
		s.publish()
	}
	return nil
}

func (s *Sink) publish() {
	if s.counter != nil && s.pending > 0 {
		s.counter.Add(float64(s.pending))
	}
	s.pending = 0
}

// Finish implements api.Sink.
func (s *Sink) Finish() error { s.publish(); return nil }

// Close implements api.Sink.
func (s *Sink) Close() error { s.publish(); return nil }
