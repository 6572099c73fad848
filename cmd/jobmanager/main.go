// Command jobmanager runs a Flow JobManager. See docs/operations.md.
package main

import (
	"os"

	"github.com/flowrt/flow/internal/daemon"
	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin" // the built-in operator library
)

func main() {
	if err := daemon.JobManagerCommand(api.Default).Execute(); err != nil {
		os.Exit(1)
	}
}
