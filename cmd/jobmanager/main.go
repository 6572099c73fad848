// Command jobmanager runs a Flow JobManager with the built-in operator
// library. See docs/operations.md; docs/sdk.md builds one with your own types.
package main

import (
	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin" // the built-in operator library
	"github.com/flowrt/flow/pkg/cluster"
)

func main() { cluster.RunJobManager(api.Default) }
