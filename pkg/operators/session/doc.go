// Package session is the built-in keyed `session` operator: event-time
// session windows per key.
//
// Config: `gap` (required), `field` (optional numeric expression). A record
// with timestamp ts opens the session [ts, ts+gap); sessions of a key that
// overlap or touch merge into one, so a session ends gap after its last
// record. When the watermark reaches end-1 (allowed lateness 0) the session
// is emitted as {"key", "start", "end", "count"[, "sum"]} with timestamp
// end-1 and its state is cleared; at the end of a bounded input the final
// watermark emits every open session. Late records (whose own session
// [ts, ts+gap) would already have fired) are dropped; a record without a
// timestamp is a record error.
//
// State per key: the open sessions (ValueState "sessions": start, end and
// the namespace holding the session's aggregate), the aggregates
// (ReducingState "acc", one namespace per session; merging sessions folds
// their namespaces with MergeNamespaces) and one event-time timer per
// session at end-1 (moved when a session grows or merges).
//
// Importing the package registers the type in api.Default.
package session
