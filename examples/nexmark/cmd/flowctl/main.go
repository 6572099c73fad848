// Command flowctl is Flow's flowctl with the Nexmark queries' Go functions
// (examples/nexmark/functions.go) registered beside the built-in types.
package main

import (
	"fmt"
	"os"

	"github.com/flowrt/flow/examples/nexmark"
	"github.com/flowrt/flow/pkg/cluster"
)

func main() {
	reg, err := nexmark.Registry()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flowctl:", err)
		os.Exit(1)
	}
	cluster.RunFlowctl(reg)
}
