// Package reduce is the built-in keyed `reduce` operator: a running
// aggregate of a numeric expression per key.
//
// Config: `field`, an expression over the record (a field name such as
// `value`, or `price * qty`) that must evaluate to a number; `fn`, one of
// sum (default), min, max, avg. For every record it folds the value into
// its key's aggregate (keyed ValueState "acc": sum, min or max as a
// float64; for avg the sum and count) and emits {"key": k, "<fn>": v} with
// the record's key and timestamp, v being the aggregate including this
// record. A record whose expression fails or is not a number is a record
// error (on_error: skip drops it).
//
// Importing the package registers the type in api.Default.
package reduce
