// Package dedupe is the built-in keyed `dedupe` operator: it passes the
// first record of each key and drops the key's later records until `ttl`
// has passed since that first record.
//
// The key's "seen" flag is a ValueState[bool] with state TTL (processing
// time, refreshed on write only, never returning expired values): once it
// expires, the next record of the key passes again and starts a new period.
// Expired flags are removed when read and by the runtime's idle TTL sweep,
// so state stays bounded by the keys seen within one ttl. Passed records
// are emitted unchanged.
//
// Importing the package registers the type in api.Default.
package dedupe
