package jobspec

import (
	"errors"
	"fmt"
	"sort"

	"github.com/flowrt/flow/pkg/api"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// CheckJob runs the CheckJob hook of every operator type of g that has one
// (api.OperatorType.CheckJob) and returns their errors, each naming the
// operator. Parse calls it; the JobManager calls it on graphs submitted
// from Go.
func CheckJob(g *jobgraphv1.JobGraph, reg *api.Registry) error {
	var errs []error
	// Edges of side outputs name one the source's type declares (Parse
	// checks this where the spec names the input).
	for _, e := range g.GetEdges() {
		side := e.GetSideOutput()
		if side == "" {
			continue
		}
		for _, v := range g.GetVertices() {
			if v.GetId() != e.GetSource() {
				continue
			}
			typ, err := reg.Resolve(v.GetType(), v.GetKind() != jobgraphv1.VertexKind_VERTEX_KIND_SOURCE)
			if err == nil && !typ.HasSideOutput(side) {
				errs = append(errs, fmt.Errorf("operator %q: input %q: %s", e.GetTarget(), ref(e.GetSource(), side), noSideOutput(e.GetSource(), typ, side)))
			}
		}
	}
	checkJob(g, reg, func(id string, err error) { errs = append(errs, fmt.Errorf("operator %q: %w", id, err)) })
	return errors.Join(errs...)
}

func checkJob(g *jobgraphv1.JobGraph, reg *api.Registry, report func(id string, err error)) {
	type vinfo struct {
		v   *jobgraphv1.Vertex
		typ *api.OperatorType
		cfg api.Config
	}
	vs := map[string]*vinfo{}
	hooks := false
	for _, v := range g.GetVertices() {
		typ, err := reg.Resolve(v.GetType(), v.GetKind() != jobgraphv1.VertexKind_VERTEX_KIND_SOURCE)
		if err != nil {
			continue // reported by the type checks
		}
		cfg, _ := typ.DecodeConfigJSON(v.GetConfig())
		vs[v.GetId()] = &vinfo{v: v, typ: typ, cfg: cfg}
		hooks = hooks || typ.CheckJob != nil
	}
	if !hooks {
		return
	}
	ins := map[string][]string{}
	inEdges, outEdges := map[string][]*jobgraphv1.Edge{}, map[string][]*jobgraphv1.Edge{}
	for _, e := range g.GetEdges() {
		inEdges[e.GetTarget()] = append(inEdges[e.GetTarget()], e)
		outEdges[e.GetSource()] = append(outEdges[e.GetSource()], e)
		ins[e.GetTarget()] = append(ins[e.GetTarget()], e.GetSource())
	}
	// noWM lists the sources without watermarks upstream of id.
	noWM := func(id string) []string {
		seen, found := map[string]bool{}, map[string]bool{}
		var walk func(string)
		walk = func(id string) {
			if seen[id] {
				return
			}
			seen[id] = true
			if vi := vs[id]; vi != nil && vi.typ.Kind == api.KindSource {
				if vi.v.GetWatermarks() == nil && !vi.cfg.Bool("watermarks") && !vi.typ.Watermarks {
					found[id] = true
				}
				return
			}
			for _, in := range ins[id] {
				walk(in)
			}
		}
		for _, in := range ins[id] {
			walk(in)
		}
		list := make([]string, 0, len(found))
		for s := range found {
			list = append(list, s)
		}
		sort.Strings(list)
		return list
	}
	for _, v := range g.GetVertices() {
		vi := vs[v.GetId()]
		if vi == nil || vi.typ.CheckJob == nil || vi.cfg == nil {
			continue
		}
		view := api.JobView{OperatorID: v.GetId(), Config: vi.cfg, SourcesWithoutWatermarks: noWM(v.GetId())}
		for _, e := range outEdges[v.GetId()] {
			if ci := vs[e.GetTarget()]; ci != nil {
				view.Consumers = append(view.Consumers, api.JobNeighbor{ID: e.GetTarget(), Type: ci.typ.Name, Config: ci.cfg, SideOutput: e.GetSideOutput()})
			}
		}
		for _, e := range inEdges[v.GetId()] {
			if si := vs[e.GetSource()]; si != nil {
				view.Inputs = append(view.Inputs, api.JobInput{
					JobNeighbor:  api.JobNeighbor{ID: e.GetSource(), Type: si.typ.Name, Config: si.cfg, SideOutput: e.GetSideOutput()},
					Input:        int(e.GetInput()),
					Partitioning: partitioningName(e.GetPartitioning()),
				})
			}
		}
		if err := vi.typ.CheckJob(view); err != nil {
			report(v.GetId(), err)
		}
	}
}

func partitioningName(p jobgraphv1.Partitioning) string {
	switch p {
	case jobgraphv1.Partitioning_PARTITIONING_FORWARD:
		return PartitioningForwardName
	case jobgraphv1.Partitioning_PARTITIONING_REBALANCE:
		return PartitioningRebalanceName
	case jobgraphv1.Partitioning_PARTITIONING_HASH:
		return "hash"
	case jobgraphv1.Partitioning_PARTITIONING_BROADCAST:
		return PartitioningBroadcastName
	}
	return "unspecified"
}
