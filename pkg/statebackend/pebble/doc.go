// Package pebble is the on-disk keyed state backend: one Pebble DB per
// keyed operator instance in a subtask, under a directory the runtime
// gives it.
//
// Key layout (all integers big-endian):
//
//	state:        key group (2) | state id (2) | uvarint len(key) | key | uvarint len(ns) | ns | user key
//	timer index:  key group (2) | 0xFFFF | uvarint len(key) | key | uvarint len(ns) | ns | domain (1) | timestamp (8)
//	timers:       0xF0 | domain (1) | timestamp (8, sign bit flipped) | key group (2) | uvarint len(key) | key | ns
//	registry:     0xFE 'S' | state id (2)  -> the state's spec (JSON)
//
// Key groups are below 0x8000, so every key group is one contiguous range
// of the keyspace (its state and its timer index); the length prefixes
// make (key, namespace) prefix-free, so a map state's entries are one
// contiguous range ordered by user key. Timers are ordered by (domain,
// timestamp, key group, key, namespace) and read through a small in-memory
// head cache, so firing many timers does not rescan tombstones.
//
// Writes go into one indexed pebble.Batch (read-your-writes for reads and
// iteration) that is committed when it reaches Options.BatchSize, on Flush
// and on Close; the WAL is off by default because snapshots, not the WAL,
// are the durable copy of state. List state appends are Pebble merges (merger
// "flow.list-append.v1", linear in the number of appends), so adding to a
// list never reads it.
//
// Corruption and Pebble's fatal errors never exit the process (Pebble's
// defaults for its Logger's Fatalf and its DataCorruption event both call
// os.Exit): the backend keeps the first such error, stops using the DB and
// returns it, as one line naming the file and wrapping ErrCorrupt (or
// ErrFatal), from every later operation, so only the task owning the
// backend fails. VerifyFile checks the files of a native checkpoint
// against Pebble's block checksums, and VerifyCheckpoint its OPTIONS and
// MANIFEST (which must list every SST), before a restore opens them.
//
// Importing the package registers its Factory as "pebble" with
// statebackend.Register: a job graph's state_backend selects it by name,
// and snapshots find it by the format of a native handle
// (statebackend.LookupNative). Its stores are statebackend.NativeStores
// (Checkpoint).
//
// Promises: one goroutine uses a backend; no goroutine is started besides
// Pebble's own (flushes, compactions), which stop on Close.
package pebble
