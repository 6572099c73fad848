// Package join holds the built-in two-input joins (api.TwoInputOperator),
// registered in api.Default:
//
//   - interval-join: event time; a left record a joins a right record b of
//     the same key when b.ts+lower <= a.ts <= b.ts+upper. Each row is kept
//     until the watermark shows no future row of the other side can match
//     it (a quiet key's rows at most cleanupDelay longer), so state is
//     bounded by the interval and the watermark's lag.
//   - window-join: event time; left and right rows of the same key in the
//     same tumbling or sliding window are joined when the window ends (the
//     watermark passes its last millisecond); the window's rows are then
//     dropped.
//   - join: a regular (unwindowed) inner or left outer join on the key. Its
//     rows stay in state until their ttl expires; without ttl they stay
//     forever.
//
// The first input of the spec's inputs is the left side, the second the
// right side. A joined row is the JSON object {"left": <left record>,
// "right": <right record>} (right is null for an unmatched left row of a
// left outer join), keyed by the join key; its timestamp is the larger of
// both rows' (interval-join, join) or the window's last millisecond
// (window-join).
//
// The window join keeps the rows of one side in one window as one map entry
// per key: a sequence of uvarint-length-prefixed records. The interval
// join keeps the rows of both sides of a key in one list, appended to and
// pruned as described in interval.go (layout 2; interval_v1.go reads the
// earlier layout).
package join
