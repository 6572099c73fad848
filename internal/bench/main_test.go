package bench

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/internal/daemon"
)

// daemonEnv names the daemon ("jobmanager" or "taskmanager") the test
// binary runs instead of its benchmarks when BenchmarkRecovery re-executes
// it: the stock daemon commands with this package's registry.
const daemonEnv = "FLOW_BENCH_DAEMON"

func TestMain(m *testing.M) {
	switch os.Getenv(daemonEnv) {
	case "":
	case "jobmanager":
		cmd := daemon.JobManagerCommand(registry)
		cmd.SetArgs(os.Args[1:])
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	case "taskmanager":
		cmd := daemon.TaskManagerCommand(registry)
		cmd.SetArgs(os.Args[1:])
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: want jobmanager or taskmanager\n", daemonEnv, os.Getenv(daemonEnv))
		os.Exit(2)
	}
	goleak.VerifyTestMain(m)
}
