// Package top is the built-in keyed `top` operator: the n rows with the
// largest (order: desc) or smallest (order: asc) value of an expression
// per key, continuously or per event-time tumbling window.
//
// Ranking: rows rank by the `by` expression's value; equal values rank by
// the rows' bytes, so the ranking does not depend on arrival order (a
// parallel run ranks as a sequential one). Rows are kept as received and
// emitted with a "rank" member added (1 = first; the name is `rankField`).
//
// Continuous (no `window`): per key a ValueState holds the current first n
// rows. A record that enters them at rank r is an update of ranks r..m (m:
// the number of rows held, at most n): the operator emits the rows now at
// those ranks, each with its rank. Read as an upsert stream keyed by (key,
// rank), the output's latest row per (key, rank) is the key's top n of
// everything read so far (as Flink's ROW_NUMBER() <= n, without the
// retractions). A record that does not enter the top n is dropped, reading
// state only.
//
// Windowed (`window: size`): per key and tumbling window [start,
// start+size) the state holds the window's first n rows and an event-time
// timer at end-1; when the watermark passes it, the rows are emitted in
// rank order with "rank", "start" and "end" members, timestamp end-1, and
// the window's state is cleared. Late records (their window emitted) are
// dropped; a record without a timestamp is a record error.
//
// State is keyed (checkpointed, rescalable by key group) on any backend.
// Importing the package registers the type in api.Default.
package top
