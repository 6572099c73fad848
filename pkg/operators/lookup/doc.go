// Package lookup is the built-in `lookup` operator: a stream joined with a
// bounded side table that each subtask loads from a JSON Lines file when
// it opens (Nexmark q13's bids joined with a side input).
//
// Config: `path` (the file, read on the TaskManager: a relative path is
// relative to its working directory), `key` (expression over the stream's
// records), `tableKey` (expression over the table's rows, default `key`)
// and `kind` (inner: records without a row are dropped; left: they are
// emitted with "right": null). Each record with a matching row is emitted
// as {"left": record, "right": row}, with the record's key and timestamp;
// keys compare by their key text (as keyBy renders them: 7 and 7.0 match).
//
// The table is read once per subtask, in Open, into memory (a map from key
// text to row): it is not state and is not checkpointed; a restore or a
// rescale reads the file again. When two lines have the same key the later
// wins. A missing or unreadable file, a line that is not a JSON object and
// a row whose tableKey is null fail Open with a one-line error naming the
// file and the line. Blank lines are skipped.
//
// Importing the package registers the type in api.Default.
package lookup
