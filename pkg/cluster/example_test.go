package cluster_test

import (
	"context"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/cluster"
)

// shout is a user-defined operator type: it upper-cases nothing, it only
// shows where a type of yours goes.
var shout = api.OperatorType{
	Name: "shout", Kind: api.KindOperator, Doc: "Passes records through, loudly.",
	Fields:      []api.Field{{Name: "volume", Type: api.TypeInt, Default: int64(11), Doc: "How loud."}},
	NewOperator: func(api.Config) (api.Operator, error) { return nil, nil },
}

// A TaskManager binary with your operator types: the built-ins (imported
// for their side effects from github.com/flowrt/flow/pkg/builtin) plus
// yours. Build the JobManager the same way, with the same registry.
func ExampleRunTaskManager() {
	reg := api.Default.Clone()
	reg.MustRegister(shout)
	cluster.RunTaskManager(reg) // in func main(); it runs until SIGTERM
}

// A JobManager binary that validates jobs against your types, for the
// stock flowctl and for submissions.
func ExampleRunJobManager() {
	reg := api.Default.Clone()
	reg.MustRegister(shout)
	cluster.RunJobManager(reg)
}

// flowctl with your registry: it knows your types without a cluster
// (--local here), and `flowctl local` runs jobs that use them.
func ExampleFlowctl() {
	reg := api.NewRegistry()
	reg.MustRegister(shout)
	cluster.Flowctl(context.Background(), []string{"operators", "--local", "shout"}, reg)
	// Output:
	// shout (operator)
	//
	// Passes records through, loudly.
	//
	// Config fields:
	//   NAME    TYPE  REQUIRED  DEFAULT  DESCRIPTION
	//   volume  int   no        11       How loud.
}
