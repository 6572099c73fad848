package jobgraph

import (
	"errors"
	"fmt"

	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Plan is a JobGraph after chaining: each TaskVertex is a chain of operators
// that runs in one goroutine per subtask.
type Plan struct {
	Tasks []*TaskVertex
	// byID indexes Tasks by id.
	byID map[string]*TaskVertex
}

// TaskVertex is a chain of operators with one parallelism.
type TaskVertex struct {
	// ID is the id of the chain's head operator.
	ID          string
	Operators   []string
	Parallelism int
	Inputs      []TaskEdge
	Outputs     []TaskEdge
}

// TaskEdge connects two task vertices.
type TaskEdge struct {
	Upstream     string
	Downstream   string
	Partitioning jobgraphv1.Partitioning
	// KeyBy is the edge's key expression (hash edges): the graph edge's
	// key_by, else the downstream head's.
	KeyBy string
	// Input is which input of the downstream head the edge feeds (0 first,
	// 1 second of a two-input operator).
	Input int
	// SideOutput is the side output of the upstream tail the edge carries
	// ("": its main output).
	SideOutput string
	// UpstreamParallelism and DownstreamParallelism of the two ends.
	UpstreamParallelism   int
	DownstreamParallelism int
}

// Task returns the task vertex with the given id, or nil.
func (p *Plan) Task(id string) *TaskVertex { return p.byID[id] }

// TaskOf returns the task vertex whose chain contains the operator.
func (p *Plan) TaskOf(operatorID string) *TaskVertex {
	for _, t := range p.Tasks {
		for _, op := range t.Operators {
			if op == operatorID {
				return t
			}
		}
	}
	return nil
}

// TotalSubtasks is the number of slots the plan needs.
func (p *Plan) TotalSubtasks() int {
	n := 0
	for _, t := range p.Tasks {
		n += t.Parallelism
	}
	return n
}

// VertexParallelism returns the vertex's parallelism, falling back to the
// job's default and then 1.
func VertexParallelism(g *jobgraphv1.JobGraph, v *jobgraphv1.Vertex) int {
	if v.GetParallelism() > 0 {
		return int(v.GetParallelism())
	}
	if g.GetParallelism() > 0 {
		return int(g.GetParallelism())
	}
	return 1
}

// BuildPlan chains the graph's vertices: B joins A's chain when the edge A->B
// is FORWARD, A has no other output, B no other input, and both have the same
// parallelism. Vertices keep the order of the graph.
func BuildPlan(g *jobgraphv1.JobGraph) (*Plan, error) {
	vertices := make(map[string]*jobgraphv1.Vertex, len(g.GetVertices()))
	for _, v := range g.GetVertices() {
		if _, dup := vertices[v.GetId()]; dup {
			return nil, fmt.Errorf("job graph: duplicate vertex id %q", v.GetId())
		}
		vertices[v.GetId()] = v
	}
	ins := map[string][]*jobgraphv1.Edge{}
	outs := map[string][]*jobgraphv1.Edge{}
	for _, e := range g.GetEdges() {
		if vertices[e.GetSource()] == nil || vertices[e.GetTarget()] == nil {
			return nil, fmt.Errorf("job graph: edge %s -> %s names an unknown vertex", e.GetSource(), e.GetTarget())
		}
		ins[e.GetTarget()] = append(ins[e.GetTarget()], e)
		outs[e.GetSource()] = append(outs[e.GetSource()], e)
	}
	if len(vertices) == 0 {
		return nil, errors.New("job graph: no vertices")
	}
	par := func(id string) int { return VertexParallelism(g, vertices[id]) }
	chainedToPrev := func(id string) bool {
		in := ins[id]
		if len(in) != 1 {
			return false
		}
		e := in[0]
		return e.GetPartitioning() == jobgraphv1.Partitioning_PARTITIONING_FORWARD && e.GetInput() == 0 && e.GetSideOutput() == "" &&
			len(outs[e.GetSource()]) == 1 && par(e.GetSource()) == par(id)
	}
	p := &Plan{byID: map[string]*TaskVertex{}}
	headOf := map[string]string{}
	for _, v := range g.GetVertices() {
		id := v.GetId()
		if chainedToPrev(id) {
			continue
		}
		t := &TaskVertex{ID: id, Parallelism: par(id)}
		for cur := id; ; {
			t.Operators = append(t.Operators, cur)
			headOf[cur] = id
			o := outs[cur]
			if len(o) != 1 || !chainedToPrev(o[0].GetTarget()) {
				break
			}
			cur = o[0].GetTarget()
			if len(t.Operators) > len(vertices) {
				return nil, errors.New("job graph: cycle through forward edges")
			}
		}
		p.Tasks = append(p.Tasks, t)
		p.byID[id] = t
	}
	if len(headOf) != len(vertices) {
		return nil, errors.New("job graph: cycle through forward edges")
	}
	between := map[[2]string]*jobgraphv1.Edge{}
	for _, e := range g.GetEdges() {
		up, down := headOf[e.GetSource()], headOf[e.GetTarget()]
		if first := between[[2]string{up, down}]; first != nil && up != down {
			return nil, fmt.Errorf("job graph: %s reads %s twice (%s and %s): an operator reads one output of another; put an operator between them for the second",
				e.GetTarget(), e.GetSource(), outputName(first), outputName(e))
		}
		between[[2]string{up, down}] = e
		if up == down {
			continue // chained
		}
		if e.GetPartitioning() == jobgraphv1.Partitioning_PARTITIONING_FORWARD && par(e.GetSource()) != par(e.GetTarget()) {
			return nil, fmt.Errorf("job graph: forward edge %s -> %s joins parallelism %d to %d; use rebalance or keyBy",
				e.GetSource(), e.GetTarget(), par(e.GetSource()), par(e.GetTarget()))
		}
		if e.GetInput() < 0 || e.GetInput() > 1 {
			return nil, fmt.Errorf("job graph: edge %s -> %s feeds input %d; operators have input 0 or 1", e.GetSource(), e.GetTarget(), e.GetInput())
		}
		keyBy := e.GetKeyBy()
		if keyBy == "" {
			keyBy = vertices[e.GetTarget()].GetKeyBy()
		}
		te := TaskEdge{
			Upstream: up, Downstream: down, Partitioning: e.GetPartitioning(), Input: int(e.GetInput()), SideOutput: e.GetSideOutput(),
			KeyBy:               keyBy,
			UpstreamParallelism: par(e.GetSource()), DownstreamParallelism: par(e.GetTarget()),
		}
		p.byID[up].Outputs = append(p.byID[up].Outputs, te)
		p.byID[down].Inputs = append(p.byID[down].Inputs, te)
	}
	return p, nil
}

func outputName(e *jobgraphv1.Edge) string {
	if e.GetSideOutput() == "" {
		return "its main output"
	}
	return "side output " + e.GetSideOutput()
}

// Channel is one input channel of a downstream subtask: it reads
// subpartition Subpartition of upstream subtask UpstreamSubtask.
type Channel struct {
	UpstreamSubtask int
	Subpartition    int
}

// InputChannels lists, in order, the channels through which downstream
// subtask `subtask` reads the edge. FORWARD reads the upstream subtask with
// the same index (its only subpartition); every other partitioning reads
// subpartition `subtask` of every upstream subtask.
func (e TaskEdge) InputChannels(subtask int) []Channel {
	if e.Partitioning == jobgraphv1.Partitioning_PARTITIONING_FORWARD {
		return []Channel{{UpstreamSubtask: subtask, Subpartition: 0}}
	}
	chs := make([]Channel, e.UpstreamParallelism)
	for i := range chs {
		chs[i] = Channel{UpstreamSubtask: i, Subpartition: subtask}
	}
	return chs
}

// Subpartitions is how many subpartitions each upstream subtask writes.
func (e TaskEdge) Subpartitions() int {
	if e.Partitioning == jobgraphv1.Partitioning_PARTITIONING_FORWARD {
		return 1
	}
	return e.DownstreamParallelism
}
