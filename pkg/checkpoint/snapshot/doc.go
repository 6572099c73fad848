// Package snapshot takes and restores the state snapshots of subtasks:
// the engine under checkpoints, savepoints and rescaling.
//
// A snapshot has two phases, matching the task loop:
//
//  1. Sync (Keyed.Sync, or Sync for a whole operator) runs on the task
//     goroutine and is short. Backends whose store is a
//     statebackend.NativeStore write a native checkpoint (Pebble commits,
//     flushes its memtables and hard-links its files); heap backends
//     take a copy-on-write view (statebackend.Engine.View) in time
//     independent of the number of keys; backends without views copy
//     every entry into an immutable buffer in one pass.
//  2. Async (KeyedPending.Async, Pending.Async) runs on any goroutine while
//     the task keeps processing: it sorts and encodes the canonical format,
//     or uploads the native Pebble files, and returns the handles for the
//     checkpoint metadata (proto flow.checkpoint.v1).
//
// Formats (byte layouts in docs/formats/state-snapshot.md):
//
//   - canonical keyed state ("FLOWKST1"): backend-neutral, one section per
//     key group in ascending order, each with a CRC32C and its offset in
//     KeyedStateHandle.key_group_offsets; records in a section sorted by
//     their bytes, so identical state gives identical files on heap and
//     Pebble. Written by heap checkpoints, by Full and Savepoint snapshots
//     of every backend, and by WriteKeyed.
//   - native Pebble (format "pebble"): the files of a Pebble checkpoint.
//     In Checkpoint mode SST files go to the job's shared directory once
//     and later checkpoints reference them (incremental); MANIFEST, OPTIONS
//     and marker files are owned by each checkpoint.
//   - operator state ("FLOWOPS1"): one file per operator state.
//
// Restore: RestoreKeyed (canonical) and Restore (any format) restore
// exactly a key-group range from any number of handles, so a new subtask
// after rescaling reads the overlapping sections of several old handles;
// RestoreBackend opens a backend of the kind a statebackend.Factory names
// and reopens a native snapshot of that kind in place when the key-group
// range did not change (otherwise it ingests canonically; RestorePebble is
// the same with all of pebble.Options). Native handles are verified and
// read by the statebackend.NativeFactory of their format
// (statebackend.LookupNative), never by the type of a backend; the
// package imports pkg/statebackend/pebble, so the "pebble" format is
// always registered where snapshots are read.
// RedistributeOperatorState splits operator state across a new
// parallelism.
//
// Promises: Sync and WriteKeyed touch a backend only on the caller's
// goroutine; Async never touches the live backend (it reads the heap view,
// the captured copy or the checkpoint directory), so it may run
// concurrently with processing and with other Asyncs; no goroutine is
// started. A heap pending holds its view until Async returns or Discard
// is called: call exactly one of them, or the heap keeps copying on write
// for a snapshot nobody reads. Corrupt or truncated files yield
// errors wrapping ErrCorrupt that name the file and the key group, never a
// panic. The caller must not Close a Pebble backend while a Sync is
// running; a pending Async needs only its checkpoint directory.
package snapshot
