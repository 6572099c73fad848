package api

// SplitSource is a Source whose input is a set of independent splits (a
// file, a partition, a generator sequence), each of which the source reads
// in order and can resume from a recorded position. Its position in a
// checkpoint or savepoint is the list of its unfinished splits, so a job can
// restart with another parallelism: the runtime hands every split to exactly
// one new subtask, which continues it where it stopped.
//
// The contract:
//
//   - Splits is called on the task goroutine at the synchronous part of every
//     checkpoint and savepoint, between two Next calls. It returns the
//     subtask's unfinished splits, each encoding the split and its progress
//     (what RestoreSplits needs to continue it exactly after the last record
//     emitted before the call). Finished splits may be left out. The runtime
//     stores the list as the SplitList operator state SourceSplitsState of
//     the source's uid; Position is not called for a SplitSource.
//   - RestoreSplits is called once, after Open and before the first Next,
//     when the task starts from a snapshot that holds the source's splits. It
//     replaces whatever Open chose: from then on the subtask reads exactly
//     the given splits. The list may be empty (every split of this subtask
//     had finished, or the job has more subtasks than splits): a bounded
//     source then ends; an unbounded one stays idle.
//   - With the parallelism unchanged, subtask i receives the splits subtask
//     i recorded, in its order. With a changed parallelism, the runtime
//     concatenates the lists of the old subtasks in subtask order, lets a
//     SplitDivider divide them when there are fewer splits than new
//     subtasks, and gives element k of the result to new subtask k mod
//     parallelism.
//   - A snapshot without splits for the source (taken by a release before
//     SplitSource, or by a source that did not implement it) restores
//     through Restore with the subtask's position; such a snapshot cannot
//     be restored with a changed parallelism.
//
// Splits are opaque to the runtime; version their encoding like any
// persisted format.
type SplitSource interface {
	Source
	Splits() ([][]byte, error)
	RestoreSplits(splits [][]byte) error
}

// SplitDivider is implemented by a SplitSource whose splits can be cut into
// smaller splits, so that a job rescaled to more subtasks than it has splits
// keeps every subtask busy (a generator sequence can be cut into
// interleaved sequences; a file read from one offset usually cannot).
//
// DivideSplits is called on every new subtask, before Open, with all old
// splits (in the order described on SplitSource) and the new parallelism n,
// only when len(splits) < n. It returns splits that together cover exactly
// the input of the given ones (no record lost, none twice), ideally at least
// n of them. It must be deterministic: every new subtask computes it from
// the same input and keeps its own share of the result.
type SplitDivider interface {
	DivideSplits(splits [][]byte, n int) ([][]byte, error)
}

// SourceSplitsState is the name of the SplitList operator state in which the
// runtime stores a SplitSource's splits (codec "bytes", one element per
// split). It is reserved: a source must not declare an operator state of
// this name itself. `flowctl savepoint inspect` shows it on the source's
// uid.
const SourceSplitsState = "source-splits"

// AssignSplits returns the share of subtask of parallelism of the splits of
// a rescaled restore: the elements k with k mod parallelism == subtask, in
// order. The runtime uses it; it is exported so that tools and tests can
// tell where a split goes.
func AssignSplits(splits [][]byte, subtask, parallelism int) [][]byte {
	if parallelism < 1 || subtask < 0 || subtask >= parallelism {
		return nil
	}
	out := make([][]byte, 0, (len(splits)+parallelism-1)/parallelism)
	for k := subtask; k < len(splits); k += parallelism {
		out = append(out, splits[k])
	}
	return out
}
