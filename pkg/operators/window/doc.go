// Package window is the built-in keyed `window` operator: event-time
// tumbling and sliding window aggregates per key.
//
// Config: `size` (required), `slide` (default: size, i.e. tumbling
// windows), `field` (optional numeric expression). A window is [start,
// start+size) with start a multiple of slide (from the Unix epoch); a
// record with timestamp ts belongs to every window containing ts (size/slide
// windows when sliding). Record timestamps come from Record.Timestamp (set
// by the source or its watermark strategy); a record without one is a
// record error. A record whose windows have all been emitted already
// (window end - 1 <= current watermark) is late: it goes, unchanged, to the
// side output "late" (read it as `inputs: [<id>.late]`; nobody reading it
// drops the records), and into no window. (A sliding-window record late
// for some of its windows only is added to the others.)
//
// Per key and window (the namespace is the window start) it keeps the
// count and, with field, the sum, min and max (ValueState "acc"), and an
// event-time timer at end-1. When the watermark reaches it, the window is
// emitted as {"key", "start", "end", "count"[, "sum", "min", "max"]} with
// timestamp end-1, and its state is cleared. At the end of a bounded input
// the final watermark emits every open window.
//
// Importing the package registers the type in api.Default.
package window
