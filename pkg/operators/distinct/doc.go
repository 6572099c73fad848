// Package distinct is the built-in keyed `distinct` operator: per key and
// event-time tumbling window, counts of distinct values and counts of
// records matching conditions (SQL's COUNT(DISTINCT x) and COUNT(*)
// FILTER (WHERE c), as Nexmark q15 and q16 use them).
//
// Config: `window` (required), `distinct` (name: expression; the window's
// number of distinct non-null values of the expression: `price < 10000 ?
// bidder : nil` counts distinct bidders of cheap bids only) and `count`
// (name: condition; the window's number of records for which the
// condition holds: `true` counts all). At least one of them is set; the
// names become the output's members.
//
// A window is [start, start+size) with start a multiple of size from the
// Unix epoch. Per key and window (the namespace is the window start) the
// operator keeps the counts (ValueState "counts", one number per name in
// name order), the distinct values seen (MapState "seen": the name's index
// and the value's key bytes), and an event-time timer at end-1. When the
// watermark passes it, it emits {"key", "start", "end", <name>: n, ...}
// with timestamp end-1 and clears the window's state, so state holds the
// open windows only. Late records (window emitted) are dropped; a record
// without a timestamp is a record error. Distinct values compare by their
// key text (as keyBy renders them: 1 and 1.0 are the same value).
//
// Importing the package registers the type in api.Default.
package distinct
