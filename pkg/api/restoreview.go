package api

// RestoreView is what OperatorType.CheckRestore sees of a snapshot a job
// is about to start from, for one operator of the type: the operator's
// config in the new job and the state the snapshot holds for its uid. It
// is read from the snapshot's files without running anything (flowctl
// savepoint check, and the JobManager before it accepts a submit with a
// restore path).
type RestoreView struct {
	// OperatorID and UID name the operator in the new job.
	OperatorID, UID string
	// Config is the operator's decoded config in the new job.
	Config Config
	// Parallelism is the operator's parallelism in the snapshot.
	Parallelism int
	// Splits are the source's splits (api.SplitSource) in the snapshot,
	// every old subtask's in subtask order.
	Splits []RestoredSplit
	// ListStates are the operator's split and union list states by name
	// (SourceSplitsState excluded), each the elements of every old subtask
	// concatenated in subtask order.
	ListStates map[string][][]byte
}

// RestoredSplit is one split of a source in a snapshot.
type RestoredSplit struct {
	// Subtask is the old subtask that held it.
	Subtask int
	Data    []byte
}

// RestoreCheck is what OperatorType.CheckRestore says about a restore: the
// source's positions in the snapshot, and what the new config does with
// them. The JobManager refuses a restore with Removed streams unless it
// allows non-restored state (--allow-non-restored-state).
type RestoreCheck struct {
	// Streams are the snapshot's positions by stream (a Kafka topic), in
	// name order.
	Streams []RestoredStream `json:"topics"`
	// Removed are the streams with restored positions that the new config
	// no longer reads: a restore drops their positions.
	Removed []string `json:"removed,omitempty"`
	// Added are the streams the new config reads that the snapshot holds
	// no position of: they start as the config says.
	Added []string `json:"added,omitempty"`
	// Now describes what the new config reads ("topics [a b]",
	// "topicPattern events-.*").
	Now string `json:"now,omitempty"`
	// Notes are further facts for the report (one line each).
	Notes []string `json:"notes,omitempty"`
}

// RestoredStream is a stream's positions in a snapshot.
type RestoredStream struct {
	Name       string              `json:"topic"`
	Partitions []RestoredPartition `json:"partitions"`
	// Known is the number of partitions the source knew of (partitions
	// below it without a position had finished).
	Known int32 `json:"knownPartitions,omitempty"`
}

// RestoredPartition is one partition's position: Offset is where reading
// continues; Stop, if not negative, where a bounded source ends it.
type RestoredPartition struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
	Stop      int64 `json:"stop"`
	Subtask   int   `json:"subtask"`
}
