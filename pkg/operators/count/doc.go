// Package count is the built-in keyed `count` operator: a running count of
// records per key.
//
// For every input record it adds one to its key's count (a
// ValueState[int64] named "count") and emits {"key": k, "count": n}, where
// n is the count including this record, with the record's key and
// timestamp. Over a bounded input, each key k with N records therefore
// produces the counts 1..N exactly once, in order. The key is written as a
// JSON string (the key's canonical text, see keyBy).
//
// Importing the package registers the type in api.Default. It uses only
// the SDK (pkg/api): any state backend works.
package count
