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
// of a directory: part-<subtask>-<n>.jsonl. A part file is written under a
// hidden in-progress name, becomes pending when it is rolled (max_file_size)
// or at the end of input, and is committed by an atomic rename after its
// data was fsynced. Only committed files carry the final name, so readers
// never see partial files. With checkpoints the sink is exactly once (two-
// phase commit, docs/checkpointing.md): the snapshot closes the in-progress
// part and records it as pending in operator state, the checkpoint's
// completion commits it, and a restore commits the restored pending parts
// again (idempotently) and deletes what was written after the checkpoint.
// The last part is committed at the end of input.
package file
