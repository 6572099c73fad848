package jobgraph

import (
	"fmt"
	"strings"
	"testing"

	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

const (
	fwd   = jobgraphv1.Partitioning_PARTITIONING_FORWARD
	hash  = jobgraphv1.Partitioning_PARTITIONING_HASH
	rebal = jobgraphv1.Partitioning_PARTITIONING_REBALANCE
)

func v(id string, par int32) *jobgraphv1.Vertex { return &jobgraphv1.Vertex{Id: id, Parallelism: par} }

func e(src, dst string, p jobgraphv1.Partitioning) *jobgraphv1.Edge {
	return &jobgraphv1.Edge{Source: src, Target: dst, Partitioning: p}
}

func TestVertexParallelism(t *testing.T) {
	for _, tc := range []struct {
		job, vertex int32
		want        int
	}{{0, 0, 1}, {4, 0, 4}, {4, 2, 2}, {0, 3, 3}} {
		g := &jobgraphv1.JobGraph{Parallelism: tc.job}
		if got := VertexParallelism(g, v("a", tc.vertex)); got != tc.want {
			t.Errorf("job %d, vertex %d: parallelism %d, want %d", tc.job, tc.vertex, got, tc.want)
		}
	}
}

// tasks renders a plan as "head[op op](par) ..." for comparison.
func tasks(p *Plan) string {
	var b strings.Builder
	for i, t := range p.Tasks {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s%v(%d)", t.ID, t.Operators, t.Parallelism)
	}
	return b.String()
}

func TestBuildPlanChaining(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    *jobgraphv1.JobGraph
		want string
	}{
		{"forward chain", &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 2), v("b", 2), v("c", 2)},
			Edges: []*jobgraphv1.Edge{e("a", "b", fwd), e("b", "c", fwd)}}, "a[a b c](2)"},
		{"hash breaks the chain", &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 2), v("b", 3), v("c", 3)},
			Edges: []*jobgraphv1.Edge{e("a", "b", hash), e("b", "c", fwd)}}, "a[a](2) b[b c](3)"},
		{"fan-out is not chained", &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 1), v("b", 1), v("c", 1)},
			Edges: []*jobgraphv1.Edge{e("a", "b", fwd), e("a", "c", fwd)}}, "a[a](1) b[b](1) c[c](1)"},
		{"fan-in is not chained", &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 1), v("b", 1), v("c", 1)},
			Edges: []*jobgraphv1.Edge{e("a", "c", fwd), e("b", "c", rebal)}}, "a[a](1) b[b](1) c[c](1)"},
		{"job parallelism applies", &jobgraphv1.JobGraph{Parallelism: 3, Vertices: []*jobgraphv1.Vertex{v("a", 0), v("b", 0)},
			Edges: []*jobgraphv1.Edge{e("a", "b", fwd)}}, "a[a b](3)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := BuildPlan(tc.g)
			if err != nil {
				t.Fatal(err)
			}
			if got := tasks(p); got != tc.want {
				t.Fatalf("plan %s, want %s", got, tc.want)
			}
			n := 0
			for _, task := range p.Tasks {
				n += task.Parallelism
				if p.Task(task.ID) != task {
					t.Errorf("Task(%q) is not the plan's task", task.ID)
				}
				for _, op := range task.Operators {
					if p.TaskOf(op) != task {
						t.Errorf("TaskOf(%q) = %v, want %s", op, p.TaskOf(op), task.ID)
					}
				}
			}
			if p.TotalSubtasks() != n {
				t.Errorf("TotalSubtasks %d, want %d", p.TotalSubtasks(), n)
			}
		})
	}
}

func TestBuildPlanEdges(t *testing.T) {
	g := &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 2), {Id: "b", Parallelism: 3, KeyBy: "k"}},
		Edges: []*jobgraphv1.Edge{e("a", "b", hash)}}
	p, err := BuildPlan(g)
	if err != nil {
		t.Fatal(err)
	}
	out := p.Task("a").Outputs
	if len(out) != 1 || len(p.Task("b").Inputs) != 1 || out[0] != p.Task("b").Inputs[0] {
		t.Fatalf("edges: a.Outputs %v, b.Inputs %v", out, p.Task("b").Inputs)
	}
	te := out[0]
	if te.KeyBy != "k" || te.UpstreamParallelism != 2 || te.DownstreamParallelism != 3 || te.Subpartitions() != 3 {
		t.Fatalf("edge %+v, subpartitions %d", te, te.Subpartitions())
	}
	if got := fmt.Sprint(te.InputChannels(1)); got != "[{0 1} {1 1}]" {
		t.Fatalf("hash input channels of subtask 1: %s", got)
	}
	f := TaskEdge{Partitioning: fwd, UpstreamParallelism: 2, DownstreamParallelism: 2}
	if got := fmt.Sprint(f.InputChannels(1)); got != "[{1 0}]" || f.Subpartitions() != 1 {
		t.Fatalf("forward input channels of subtask 1: %s, subpartitions %d", got, f.Subpartitions())
	}
}

func TestBuildPlanErrors(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		g          *jobgraphv1.JobGraph
	}{
		{"empty", "no vertices", &jobgraphv1.JobGraph{}},
		{"duplicate", `duplicate vertex id "a"`, &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 1), v("a", 1)}}},
		{"unknown vertex", "names an unknown vertex", &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 1)},
			Edges: []*jobgraphv1.Edge{e("a", "x", fwd)}}},
		{"forward rescale", "joins parallelism 1 to 2", &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 1), v("b", 2)},
			Edges: []*jobgraphv1.Edge{e("a", "b", fwd)}}},
		{"forward cycle", "cycle through forward edges", &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 1), v("b", 1)},
			Edges: []*jobgraphv1.Edge{e("a", "b", fwd), e("b", "a", fwd)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildPlan(tc.g)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, tc.want)
			}
		})
	}
}

// TestTwoInputEdges: each edge keeps its input and its own key (else the
// target's), deployments carry the input per gate, and an input other than
// 0 or 1 is refused.
func TestTwoInputEdges(t *testing.T) {
	j := &jobgraphv1.Vertex{Id: "j", Parallelism: 2, KeyBy: "user"}
	g := &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 2), v("b", 2), j}, Edges: []*jobgraphv1.Edge{
		e("a", "j", hash),
		{Source: "b", Target: "j", Partitioning: hash, KeyBy: "id", Input: 1},
	}}
	p, err := BuildPlan(g)
	if err != nil {
		t.Fatal(err)
	}
	in := p.Task("j").Inputs
	if len(in) != 2 || in[0].KeyBy != "user" || in[0].Input != 0 || in[1].KeyBy != "id" || in[1].Input != 1 {
		t.Fatalf("inputs %+v", in)
	}
	if out := p.Task("b").Outputs; len(out) != 1 || out[0].KeyBy != "id" {
		t.Fatalf("b's output %+v, want keyed by id", out)
	}
	ds := BuildDeployments("job", 0, g, p, func(string, int) string { return "addr" })
	for _, d := range ds {
		if d.GetId().GetTask() == "j" && (len(d.GetInputs()) != 2 || d.GetInputs()[0].GetInput() != 0 || d.GetInputs()[1].GetInput() != 1) {
			t.Fatalf("deployment inputs %v", d.GetInputs())
		}
	}
	// A forward edge into the second input does not chain.
	g2 := &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{v("a", 1), v("j", 1)}, Edges: []*jobgraphv1.Edge{
		{Source: "a", Target: "j", Partitioning: fwd, Input: 1}}}
	if p, err := BuildPlan(g2); err != nil || tasks(p) != "a[a](1) j[j](1)" {
		t.Fatalf("plan %v, %v: want a and j in separate tasks", tasks(p), err)
	}
	g.Edges[1].Input = 2
	if _, err := BuildPlan(g); err == nil || !strings.Contains(err.Error(), "feeds input 2") {
		t.Fatalf("input 2: %v", err)
	}
}
