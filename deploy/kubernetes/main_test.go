package kubernetes

import (
	"testing"

	"go.uber.org/goleak"
)

// The tests start daemons and goroutines reading their logs: all must end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
