package exchange

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Manager's Prometheus collectors; all methods are no-ops
// when no registry was given.
type metrics struct {
	framesSent     prometheus.Counter
	bytesSent      prometheus.Counter
	backpressure   prometheus.Counter
	remoteChannels prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return &metrics{}, nil
	}
	m := &metrics{
		framesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flow_exchange_frames_sent_total",
			Help: "Frames emitted by producer subtasks into result partitions.",
		}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flow_exchange_bytes_sent_total",
			Help: "Bytes of frames emitted by producer subtasks into result partitions.",
		}),
		backpressure: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flow_exchange_backpressured_seconds_total",
			Help: "Time producer subtasks spent blocked waiting for a free buffer (backpressure).",
		}),
		remoteChannels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flow_exchange_remote_channels",
			Help: "Remote input channels (gRPC streams to producers) currently open by consumers.",
		}),
	}
	for _, c := range []prometheus.Collector{m.framesSent, m.bytesSent, m.backpressure, m.remoteChannels} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("exchange: register metrics (one Manager per registry): %w", err)
		}
	}
	return m, nil
}

func (m *metrics) sent(bytes int) {
	if m.framesSent != nil {
		m.framesSent.Inc()
		m.bytesSent.Add(float64(bytes))
	}
}

func (m *metrics) backpressured(d time.Duration) {
	if m.backpressure != nil {
		m.backpressure.Add(d.Seconds())
	}
}

func (m *metrics) remoteChannelDelta(d float64) {
	if m.remoteChannels != nil {
		m.remoteChannels.Add(d)
	}
}
