//go:build docker

package dockertest

import (
	"testing"

	"go.uber.org/goleak"
)

// The gRPC client to the JobManager must be closed by the end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
