// Package jobspec turns a YAML job spec into a JobGraph.
//
// A spec names the job, sets its default parallelism and maxParallelism,
// lists its operators as a DAG (each with a registered type, inputs, an
// optional keyBy expression, partitioning, parallelism and config), and
// configures the state backend, checkpoints and restart strategy. The full
// format is documented in docs/reference/job-spec.md.
//
// What Parse promises:
//   - Every problem in a spec is reported at once, as an *Errors whose
//     entries each read FILE:LINE:COL: what is wrong: how to fix it. Unknown
//     keys anywhere are errors. Malformed YAML gives one located line.
//   - Each operator's config is validated and defaulted by its type's schema
//     (api.OperatorType.DecodeConfig) and stored in the vertex as JSON
//     (EncodeConfig), so the runtime decodes it with DecodeConfigJSON. The
//     operator is then built once from those stored bytes
//     (api.OperatorType.Instantiate: the TaskManager's decode and
//     constructor), so a spec that parses does not fail at deploy on its
//     config. Every spec in testdata/good is deployed on a mini cluster by
//     TestGoodSpecsDeploy.
//   - Edges: keyBy on the target makes HASH edges; an explicit partitioning
//     (forward, rebalance, broadcast) applies to all inputs of the operator;
//     otherwise an edge is FORWARD when the target has a single input of the
//     same parallelism and REBALANCE if not.
//   - Vertices are in topological order (stable in spec order); each has its
//     parallelism resolved and its uid defaulted to its id.
//   - The stateBackend, checkpoints and restart sections are validated and
//     stored, with every default applied, as the graph's typed
//     StateBackendConfig, CheckpointConfig and RestartConfig (never the
//     legacy JSON bytes fields). StateBackendOf, CheckpointsOf and RestartOf
//     read them back as StateBackend, Checkpoints and Restart from any
//     graph, including one stored by an older version in the legacy JSON
//     form (through JobGraph.Effective*Config, the one reader of it).
//   - The graph passes jobgraph.BuildPlan, so chaining errors surface before
//     submission.
//
// Overrides ("--set path=value") are applied to the YAML tree before
// validation: dotted paths, operators addressed by id
// (operators.src.config.count=10), values parsed as YAML. A path must name
// something the format knows; missing keys are created.
package jobspec
