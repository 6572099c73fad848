// Package dedupe is the built-in keyed `dedupe` operator: per key it keeps
// one row, the first or the last, and passes a record when it becomes the
// key's kept row.
//
// keep: first (default) without orderBy passes the first record of each
// key and drops the key's later records until `ttl` has passed since that
// first record: the key's "seen" flag is a ValueState[bool] with state TTL
// (processing time, refreshed on write only, never returning expired
// values); once it expires, the next record of the key passes again.
//
// With orderBy (a numeric expression, e.g. the event time), "first" is the
// row with the smallest value and "last" the one with the largest; equal
// values go by the rows' bytes (the smaller wins), so the kept row does not
// depend on arrival order. The key's kept row and its value are a
// ValueState with the same TTL ("kept"). A record passes when it replaces
// the kept row: read as an upsert stream by key, the output's latest row
// per key is the key's first or last row (Flink's deduplication by
// ROW_NUMBER() = 1, without retractions). keep: last without orderBy keeps
// no state: every record is its key's newest and passes.
//
// Expired state is removed when read and by the runtime's idle TTL sweep,
// so state stays bounded by the keys written within one ttl. Passed records
// are emitted unchanged. Importing the package registers the type in
// api.Default.
package dedupe
