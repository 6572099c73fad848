// Command taskmanager is Flow's taskmanager with this module's operator types.
package main

import (
	"github.com/flowrt/flow/examples/sdk/jobs"
	"github.com/flowrt/flow/pkg/cluster"
)

func main() { cluster.RunTaskManager(jobs.Registry()) }
