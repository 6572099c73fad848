package kafka

import (
	"testing"

	"github.com/flowrt/flow/internal/sinktest"
	"github.com/flowrt/flow/pkg/api"
)

type kafkaEnv struct{ addr string }

func (e kafkaEnv) NewSink(t *testing.T) api.Sink {
	t.Helper()
	typ := SinkType()
	cfg, err := typ.DecodeConfig(map[string]any{"brokers": []any{e.addr}, "topic": "out", "deliveryGuarantee": "exactly_once"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := typ.NewSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e kafkaEnv) Committed(t *testing.T) []string { return readCommitted(t, e.addr, "out") }

// TestExactlyOnceConformance runs the exactly-once sink suite against the
// kafka sink (exactly_once) on an in-process broker.
func TestExactlyOnceConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Env { return kafkaEnv{addr: broker(t, map[string]int32{"out": 3})} })
}
