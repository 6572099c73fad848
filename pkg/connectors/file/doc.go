// Package file holds the file connectors.
//
// The `file` source reads JSON lines from a file or from every *.json and
// *.jsonl file of a directory (sorted by name; file i goes to subtask
// i mod parallelism). Each non-empty line is one record. A line that is not
// valid JSON is a record error: with on_error "skip" it is dropped and
// counted, otherwise the task fails naming the file and line. The source is
// an api.SplitSource: each file is a split {"v":1,"file":path,"offset":n}
// (n: byte offset of its next line); a checkpoint stores the subtask's
// unread files, so a job restored with another parallelism reads every line
// exactly once (whole files move between subtasks; a file is not divided).
// The set of files is fixed when the job first starts: files added to the
// directory later are not read after a restore. Position/Restore ({"file",
// "offset"} of the current file) remain for older snapshots.
//
// The `file` sink writes each record's value as a line into part files
// of a directory. A part file is written under a hidden in-progress name,
// becomes pending when it is rolled (max_file_size), at a checkpoint's
// snapshot or at the end of input, and is committed by an atomic rename
// after its data was fsynced. Only committed files carry the final name,
// so readers never see partial files. With checkpoints the sink is exactly
// once (two-phase commit, docs/checkpointing.md): the snapshot closes the
// in-progress part and records every pending part in operator state, and
// the completion of that checkpoint (or of a later one, when a
// notification is lost or late) commits them. The last parts are committed
// at the end of input.
//
// Committed files are never deleted, and a restore changes nothing until
// the restored job completes a checkpoint (or reaches the end of input): a
// restore that fails leaves the directory as it was. Then the sink commits
// the pending parts of the restored checkpoint (idempotently: a part
// already committed is fine) and deletes the uncommitted parts that the
// failed attempts of the same job and operator left: those of another run,
// of an old subtask it takes over, not pending in the restored checkpoint.
// Files of other jobs, of other operators, and of Flow versions before
// this naming are never touched. A record can appear twice in committed
// output only when a job fails after a sink subtask reached the end of its
// input and committed its last parts (no checkpoint covers them).
//
// Formats. Part file names are
//
//	part-<job>-<operator>-<run>-<subtask>-<n>.jsonl      committed
//	.part-<job>-<operator>-<run>-<subtask>-<n>.jsonl.inprogress   in progress or pending
//
// job is the first 8 characters of the job id (8 hex digits of its SHA-256
// when they are not lowercase hex), operator 8 hex digits of the SHA-256
// of "operator:" + the operator's uid, run 8 random hex digits drawn when
// the subtask starts (each attempt of each subtask has its own), subtask
// the writer's index and n its part counter from 0. Runs, attempts and
// parallelism changes never produce the same name, and a name that exists
// is skipped, never overwritten. ParsePartName parses a name. The sink's
// transaction state is the union list operator state "file-sink-parts-v1";
// each element is JSON {"v":2,"subtask":i,"pending":[{"path":committed
// path,"checkpoint":c}]} (c 0: not yet in a snapshot). Elements without
// "v" are format 1, written before part names had a job and run
// ({"subtask","next","pending":[{"part":n,"checkpoint":c}]}, parts
// part-<subtask>-<n>.jsonl of the output directory); they still restore.
// After rescaling, subtask i takes over the parts of every old subtask j
// with j mod parallelism = i.
//
// Paths (source and sink) must be absolute, or file:// URLs of absolute
// paths: a relative path would resolve against each TaskManager's working
// directory, so the config is refused.
package file
