package api

// JobView is what OperatorType.CheckJob sees of a job around one operator:
// enough to refuse, when the job is built, a job the type cannot run in
// (event-time logic without watermarks, a consumer that cannot read its
// output) instead of failing once it runs.
type JobView struct {
	// OperatorID is the operator's id in the job.
	OperatorID string
	// Config is the operator's decoded config.
	Config Config
	// SourcesWithoutWatermarks are the ids of the sources upstream of the
	// operator that assign no watermarks (no watermarks strategy, no
	// "watermarks" bool config field set to true, and a type without
	// OperatorType.Watermarks). Event time cannot pass
	// them: the operator's watermark is the minimum of its inputs'.
	SourcesWithoutWatermarks []string
	// Consumers are the operators that read the operator's outputs, one
	// per edge (SideOutput says which output).
	Consumers []JobNeighbor
	// Inputs are the operators the operator reads, one per edge.
	Inputs []JobInput
}

// JobInput is one input edge of the operator a JobView is about.
type JobInput struct {
	JobNeighbor
	// Input is which input of the operator the edge feeds (0 the first,
	// 1 the second of a two-input operator).
	Input int
	// Partitioning is the edge's: "forward", "rebalance", "hash" or
	// "broadcast".
	Partitioning string
}

// JobNeighbor is an operator next to the one a JobView is about.
type JobNeighbor struct {
	ID     string
	Type   string
	Config Config
	// SideOutput is the side output of the edge between the two (the
	// upstream one's; "": its main output).
	SideOutput string
}
