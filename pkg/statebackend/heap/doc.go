// Package heap is the in-memory keyed state backend: Go maps per state and
// key group holding encoded bytes, and a binary heap of timers per time
// domain with an index per key group for deduplication and deletion.
//
// It is the fastest backend while the state fits in memory; it holds no
// files and loses its contents on Close (snapshots are the durable copy).
// Map-state iteration order is unspecified. Like every backend it is used
// by one goroutine and takes no locks on the access path.
//
// Snapshots are copy-on-write (statebackend.Engine.View): a view bumps the
// store's epoch and keeps references to the current maps, in time
// proportional to states × key groups, not to keys. Until the view is
// released the store never mutates what it froze: the first write to a
// frozen key group after the view copies that key group's table (a shallow
// copy of its map), the first write to a frozen key (or map entry, or
// timer index of a key group) copies that one item, and later writes go
// to the copies in place. The view is read on any goroutine concurrently
// with the task's writes, without data races. Release unregisters it:
// frozen data no other view holds becomes garbage and objects are written
// in place again. Any number of views may be live at once.
package heap
