package jobgraph

import (
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// BuildDeployments returns one TaskDeployment per subtask of the plan, in
// plan order (task vertices as BuildPlan ordered them, subtasks ascending).
// addressOf gives the exchange address of the TaskManager that runs a
// subtask; it is called for every upstream subtask an input channel reads.
// Every deployment carries the whole graph g.
func BuildDeployments(jobID string, attempt int32, g *jobgraphv1.JobGraph, plan *Plan, addressOf func(task string, subtask int) string) []*clusterv1.TaskDeployment {
	out := make([]*clusterv1.TaskDeployment, 0, plan.TotalSubtasks())
	for _, t := range plan.Tasks {
		for s := 0; s < t.Parallelism; s++ {
			d := &clusterv1.TaskDeployment{
				Id:          &clusterv1.TaskID{JobId: jobID, Attempt: attempt, Task: t.ID, Subtask: int32(s)},
				Graph:       g,
				Operators:   append([]string(nil), t.Operators...),
				Parallelism: int32(t.Parallelism),
			}
			for _, in := range t.Inputs {
				gate := &clusterv1.InputGateDeployment{UpstreamTask: in.Upstream, Partitioning: in.Partitioning, Input: int32(in.Input)}
				for _, ch := range in.InputChannels(s) {
					gate.Channels = append(gate.Channels, &clusterv1.ChannelSource{
						UpstreamSubtask: int32(ch.UpstreamSubtask),
						Address:         addressOf(in.Upstream, ch.UpstreamSubtask),
						Subpartition:    int32(ch.Subpartition),
					})
				}
				d.Inputs = append(d.Inputs, gate)
			}
			for _, o := range t.Outputs {
				d.Outputs = append(d.Outputs, &clusterv1.OutputDeployment{
					DownstreamTask:        o.Downstream,
					Partitioning:          o.Partitioning,
					Subpartitions:         int32(o.Subpartitions()),
					KeyBy:                 o.KeyBy,
					DownstreamParallelism: int32(o.DownstreamParallelism),
					SideOutput:            o.SideOutput,
				})
			}
			out = append(out, d)
		}
	}
	return out
}
