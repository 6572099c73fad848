// Command flowctl is Flow's command-line client (docs/reference/flowctl.md).
// It asks the cluster for its operator types, so it needs no rebuild for a
// cluster built with your own (docs/sdk.md).
package main

import (
	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin" // the built-in operator types
	"github.com/flowrt/flow/pkg/cluster"
)

func main() { cluster.RunFlowctl(api.Default) }
