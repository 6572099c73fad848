// Package cluster runs Flow's programs — the JobManager, the TaskManager
// and flowctl — with a caller's operator registry, so that a user's own
// binaries carry the user's operator types:
//
//	func main() { cluster.RunTaskManager(myjob.Registry()) }
//
// The stock binaries in cmd/ are exactly such mains, with api.Default and
// the built-ins (import _ "github.com/flowrt/flow/pkg/builtin").
//
// What it promises:
//   - The programs are the stock ones: the same flags, FLOW_* environment
//     variables and --config file layering, logging, data dir lock, HTTP
//     endpoint (/metrics, /livez, /readyz) and shutdown on SIGINT/SIGTERM
//     (docs/operations.md).
//   - The JobManager validates every submitted job against reg, parses
//     specs for flowctl (validate, run), lists reg's types (flowctl
//     operators) and checks savepoints with them (flowctl savepoint check):
//     the stock flowctl works against a cluster of user-built binaries
//     without a rebuild. Build the JobManager and every TaskManager with the
//     same registry: a TaskManager fails to deploy a task whose type it
//     lacks.
//   - A user's flowctl (RunFlowctl) knows reg's types when no cluster is
//     reachable, and `flowctl local` runs jobs of them in-process.
//
// For tests, pkg/flowtest runs the same components in the test's process.
package cluster

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/flowrt/flow/internal/cli"
	"github.com/flowrt/flow/internal/daemon"
	"github.com/flowrt/flow/pkg/api"
)

// JobManagerCommand returns the jobmanager program whose jobs may use the
// operator types of reg. Execute runs it until SIGINT/SIGTERM; callers may
// rename it or add subcommands.
func JobManagerCommand(reg *api.Registry) *cobra.Command {
	return daemon.JobManagerCommand(registry(reg))
}

// TaskManagerCommand returns the taskmanager program that runs tasks of
// the operator types of reg.
func TaskManagerCommand(reg *api.Registry) *cobra.Command {
	return daemon.TaskManagerCommand(registry(reg))
}

// RunJobManager runs the jobmanager program with os.Args and exits the
// process with status 1 when it fails (the error is printed).
func RunJobManager(reg *api.Registry) {
	if err := JobManagerCommand(reg).Execute(); err != nil {
		os.Exit(1)
	}
}

// RunTaskManager runs the taskmanager program with os.Args and exits the
// process with status 1 when it fails.
func RunTaskManager(reg *api.Registry) {
	if err := TaskManagerCommand(reg).Execute(); err != nil {
		os.Exit(1)
	}
}

// Flowctl runs flowctl with args (without the program name), reg as its
// own registry (used when no cluster answers, and by `flowctl local`), and
// the process's stdout, stderr and environment. It returns the exit code
// (docs/reference/flowctl.md); ctx interrupts long-running commands.
func Flowctl(ctx context.Context, args []string, reg *api.Registry) int {
	return cli.Main(ctx, args, cli.Env{Registry: registry(reg)})
}

// RunFlowctl runs flowctl with os.Args, canceled by SIGINT/SIGTERM, and
// exits the process with its exit code.
func RunFlowctl(reg *api.Registry) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Flowctl(ctx, os.Args[1:], reg)
	stop()
	os.Exit(code)
}

func registry(reg *api.Registry) *api.Registry {
	if reg == nil {
		return api.Default
	}
	return reg
}
