// Package heap is the in-memory keyed state backend: encoded bytes in
// 64-byte slots, and a binary heap of timers per time domain with an index
// per key group for deduplication and deletion.
//
// Each state keeps its cells (one key and namespace) in slots numbered in
// insertion order and stored in chunks of 128; values of up to 29 bytes
// (counters, small aggregates, TTL-framed scalars) live inside the slot,
// larger values and map-state entries outside it. A Go map per key group
// indexes the slots by key. A read is one map lookup and one slot; an
// update of an existing key writes the slot in place and allocates
// nothing. The store remembers the last cell it found, so the usual
// read-modify-write of one key (a get, then an update) looks it up once.
//
// It is the fastest backend while the state fits in memory; it holds no
// files and loses its contents on Close (snapshots are the durable copy).
// Map-state iteration order is unspecified. Like every backend it is used
// by one goroutine and takes no locks on the access path.
//
// Snapshots are copy-on-write (statebackend.Engine.View): a view bumps the
// store's epoch and copies each state's list of chunk pointers (time
// proportional to keys / 128, microseconds per million keys), not the
// chunks. Until the view is released the store never mutates what it
// froze: the first write to a frozen chunk copies that chunk (one 8 KiB
// allocation for 128 cells), the first write to a frozen out-of-line value,
// map entry or timer index copies that item, and later writes go to the
// copies in place. The view is read on any goroutine concurrently with the
// task's writes, without data races. Release unregisters it: frozen data
// no other view holds becomes garbage and everything is written in place
// again. Any number of views may be live at once.
//
// Importing the package registers its Factory as "heap" with
// statebackend.Register, so that a job graph's state_backend selects it by
// name.
package heap
