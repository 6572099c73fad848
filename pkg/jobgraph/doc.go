// Package jobgraph plans the execution of a JobGraph (proto
// flow.jobgraph.v1): its task vertices (chains of operators), their
// parallelism, the edges between them with the input channels each
// subtask reads, and the per-subtask deployments a JobManager sends.
//
// It is pure: no I/O, no goroutines, and no dependency on the task
// runtime, the exchange or any state backend, so that tools which only
// reason about a job (flowctl's spec validation and `savepoint check`,
// the JobManager's validation and scheduling, a job builder) link only
// the graph's protobuf types.
//
// Promises:
//   - VertexParallelism is the vertex's parallelism, else the job's, else 1.
//   - BuildPlan chains B into A's task when the edge A->B is FORWARD and
//     carries A's main output, A has no other output, B no other input, and
//     both have the same parallelism; task vertices keep the order of the
//     graph's vertices. A side-output edge (Edge.side_output) is never
//     chained, so an operator with side-output edges ends its chain and
//     its task's outputs route each side output to its own edges. Two
//     edges between the same two operators are an error.
//     A duplicate vertex id, an edge naming an unknown vertex, an empty
//     graph, a cycle through forward edges and a forward edge between
//     different parallelisms are errors (one line naming the vertices).
//   - TaskEdge.InputChannels: FORWARD reads the upstream subtask with the
//     same index; every other partitioning reads subpartition i of every
//     upstream subtask, in upstream order.
//   - BuildDeployments returns one TaskDeployment per subtask in plan
//     order (tasks as BuildPlan ordered them, subtasks ascending), each
//     carrying the whole graph.
package jobgraph
