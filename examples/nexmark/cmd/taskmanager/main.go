// Command taskmanager is Flow's taskmanager with the Nexmark queries' Go functions
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
		fmt.Fprintln(os.Stderr, "taskmanager:", err)
		os.Exit(1)
	}
	cluster.RunTaskManager(reg)
}
