package minicluster_test

import (
	"testing"

	"go.uber.org/goleak"
)

// A mini cluster starts gRPC servers, a JobManager and TaskManagers; Close
// must stop every goroutine they started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
