package goka

import (
	"testing"

	"go.uber.org/goleak"
)

// The broker, the mini cluster and the Goka processor are stopped at the
// end of every run; nothing they started may outlive the tests, except the
// one process-wide ticker of rcrowley/go-metrics that sarama's first meter
// starts and that has no stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}
