package jobbuilder_test

import (
	"fmt"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/jobbuilder"
)

// A keyed count in Go: the JobGraph is the one the equivalent YAML spec
// gives, ready for flowtest.Cluster.Submit or JobManagerService.SubmitJob.
func ExampleJob() {
	j := jobbuilder.New("counts").Parallelism(2)
	gen := j.Source("gen", "datagen").Config(jobbuilder.Config{"count": 1000, "keys": 10})
	cnt := j.Operator("count", "count", gen).KeyBy("key").Parallelism(4).UID("count-v1")
	j.Sink("out", "print", cnt)
	graph, err := j.Build(api.Default)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, v := range graph.GetVertices() {
		fmt.Printf("%s %s uid=%s parallelism=%d\n", v.GetKind(), v.GetId(), v.GetUid(), v.GetParallelism())
	}
	for _, e := range graph.GetEdges() {
		fmt.Printf("%s -> %s %s\n", e.GetSource(), e.GetTarget(), e.GetPartitioning())
	}
	// Output:
	// VERTEX_KIND_SOURCE gen uid=gen parallelism=2
	// VERTEX_KIND_OPERATOR count uid=count-v1 parallelism=4
	// VERTEX_KIND_SINK out uid=out parallelism=2
	// gen -> count PARTITIONING_HASH
	// count -> out PARTITIONING_REBALANCE
}

// Problems come all at once, naming the job and the operator.
func ExampleJob_Build_errors() {
	j := jobbuilder.New("broken")
	gen := j.Source("gen", "datagen")
	cnt := j.Operator("count", "count", gen) // keyed, but no KeyBy
	j.Sink("out", "print", cnt).Config(jobbuilder.Config{"colour": "red"})
	_, err := j.Build(api.Default)
	fmt.Println(err)
	// Output:
	// job "broken": operator "count": type "count" is keyed and needs keyBy: add keyBy: <expression giving the key>
	// job "broken": operator "out": config field "colour": unknown field of operator type "print" (known fields: prefix, subtask_prefix)
}
