// Package savepoint holds the offline tools over savepoints (and retained
// checkpoints): Inspect, which says what a snapshot holds, and Check, a dry
// run that says whether a job can start from a snapshot before anything is
// stopped. Both read only the snapshot's `_metadata` and its state files;
// neither contacts a cluster nor writes anything.
//
// Inspect reports, per operator uid: type, parallelism and max
// parallelism, the declared states (name, kind, codecs, TTL), and, by
// reading every canonical keyed-state file (format FLOWKST1) and
// operator-state file (FLOWOPS1) in full, checksums included: entries,
// distinct keys, list elements and payload bytes per state, the key
// groups that hold data, timers, source positions and totals. Native
// Pebble handles (incremental checkpoints) are reported as the metadata
// describes them, with entry counts marked unavailable.
//
// Check matches the snapshot's operators to the job's vertices by uid
// (Vertex.uid, defaulting to its id; never by position) and compares, per
// matched operator, the states the job declares with those the snapshot
// holds. The job's declarations are learned without running it: every
// operator-kind vertex is built from the registry with its configuration
// and opened once with a dry-run api.Context whose keyed state store,
// timer service and operator state store record each declaration and
// store nothing, then closed. Sources and sinks are not opened (their Open
// reaches external systems: a file sink creates its output directory, a
// file source lists its inputs); their state (source positions, operator
// state) is matched by uid only, except that a type with a CheckRestore
// hook (api.OperatorType) is given its snapshot state (splits and list
// states, decoded from the operator-state files) and its new config, and
// reports the positions it holds and the streams the config removes and
// adds (CheckReport.Sources, CheckSources; the JobManager runs
// CheckSources on submit with a restore path).
//
// Every finding has a severity. Error findings: snapshot state that no
// operator claims (unless AllowNonRestoredState, which makes it a
// warning), a source stream with restored positions that the config no
// longer reads (likewise), a changed state kind, a changed codec id, a changed max
// parallelism, a parallelism above the snapshot's max parallelism, an
// operator that fails to open. Check returns an error wrapping
// ErrIncompatible exactly when the report has an error finding; the report
// is returned either way.
//
// Promises: no goroutine is started; a snapshot is never modified; corrupt
// files give errors naming the file (wrapping snapshot.ErrCorrupt), never
// a panic. Report and CheckReport are plain data with stable JSON field
// names (the `-o json` output of flowctl).
package savepoint
