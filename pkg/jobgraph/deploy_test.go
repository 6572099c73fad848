package jobgraph

import (
	"fmt"
	"testing"

	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

func TestBuildDeployments(t *testing.T) {
	g := &jobgraphv1.JobGraph{
		Name: "j", MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{
			{Id: "src", Type: "datagen", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SOURCE, Parallelism: 2},
			{Id: "f", Type: "filter", Kind: jobgraphv1.VertexKind_VERTEX_KIND_OPERATOR, Parallelism: 2},
			{Id: "m", Type: "map", Kind: jobgraphv1.VertexKind_VERTEX_KIND_OPERATOR, Parallelism: 3, KeyBy: "key"},
			{Id: "sink", Type: "print", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SINK, Parallelism: 3},
		},
		Edges: []*jobgraphv1.Edge{
			{Source: "src", Target: "f", Partitioning: jobgraphv1.Partitioning_PARTITIONING_FORWARD},
			{Source: "f", Target: "m", Partitioning: jobgraphv1.Partitioning_PARTITIONING_HASH},
			{Source: "m", Target: "sink", Partitioning: jobgraphv1.Partitioning_PARTITIONING_FORWARD},
		},
	}
	plan, err := BuildPlan(g)
	if err != nil {
		t.Fatal(err)
	}
	ds := BuildDeployments("job1", 4, g, plan, func(task string, s int) string { return fmt.Sprintf("%s-%d", task, s) })
	if len(ds) != 5 {
		t.Fatalf("got %d deployments, want 5", len(ds))
	}
	src1 := ds[1]
	if src1.GetId().GetTask() != "src" || src1.GetId().GetSubtask() != 1 || src1.GetId().GetAttempt() != 4 || src1.GetId().GetJobId() != "job1" {
		t.Fatalf("deployment 1 id = %v", src1.GetId())
	}
	if fmt.Sprint(src1.GetOperators()) != "[src f]" || len(src1.GetInputs()) != 0 || len(src1.GetOutputs()) != 1 {
		t.Fatalf("src deployment = %v", src1)
	}
	o := src1.GetOutputs()[0]
	if o.GetDownstreamTask() != "m" || o.GetSubpartitions() != 3 || o.GetKeyBy() != "key" || o.GetDownstreamParallelism() != 3 ||
		o.GetPartitioning() != jobgraphv1.Partitioning_PARTITIONING_HASH {
		t.Fatalf("output = %v", o)
	}
	m2 := ds[4]
	if m2.GetId().GetTask() != "m" || m2.GetId().GetSubtask() != 2 || fmt.Sprint(m2.GetOperators()) != "[m sink]" {
		t.Fatalf("deployment 4 = %v", m2.GetId())
	}
	if len(m2.GetInputs()) != 1 || len(m2.GetOutputs()) != 0 {
		t.Fatalf("m2 gates = %v", m2.GetInputs())
	}
	chs := m2.GetInputs()[0].GetChannels()
	if len(chs) != 2 {
		t.Fatalf("channels = %v", chs)
	}
	for i, ch := range chs {
		if ch.GetUpstreamSubtask() != int32(i) || ch.GetSubpartition() != 2 || ch.GetAddress() != fmt.Sprintf("src-%d", i) {
			t.Errorf("channel %d = %v", i, ch)
		}
	}
}
