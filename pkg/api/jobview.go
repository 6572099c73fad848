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
	// operator that assign no watermarks (no watermarks strategy, and no
	// "watermarks" bool config field set to true). Event time cannot pass
	// them: the operator's watermark is the minimum of its inputs'.
	SourcesWithoutWatermarks []string
	// Consumers are the operators that read the operator's output.
	Consumers []JobNeighbor
}

// JobNeighbor is an operator next to the one a JobView is about.
type JobNeighbor struct {
	ID     string
	Type   string
	Config Config
}
