// Package heap is the in-memory keyed state backend: Go maps per state and
// key group holding encoded bytes, and a binary heap of timers per time
// domain with an index for deduplication and deletion.
//
// It is the fastest backend while the state fits in memory; it holds no
// files and loses its contents on Close (snapshots are the durable copy).
// Map-state iteration order is unspecified. Like every backend it is used
// by one goroutine and takes no locks.
package heap
