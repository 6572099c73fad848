// Package statebackend holds keyed state and timers for Flow's operators.
//
// The Engine implements the SDK's api.KeyedStateStore and api.TimerService
// once, over a Store driver that only keeps bytes: the heap subpackage
// (Go maps per state and key group) and the pebble subpackage (one Pebble
// DB per operator instance). The Engine owns everything the drivers share:
// the state registry (redeclaration checks), TTL (a refresh timestamp
// before each value, list element and map entry; lazy expiry on access,
// full and incremental sweeps), list framing, timers (encoded so that byte
// order is firing order) and the canonical, backend-neutral entry stream
// used for snapshots, rescaling and switching backends.
//
// Backends are chosen by name, never by type: each kind registers a
// Factory (Register; the heap and pebble subpackages do so when imported)
// and callers open backends through Lookup(name). A kind whose stores
// copy their state natively (NativeStore: Pebble's hard-linked
// checkpoints) registers a NativeFactory, which snapshots look up by the
// format a keyed-state handle records (LookupNative) to verify and read
// those copies. An unknown name is one line listing the known ones.
//
// Promises:
//   - One goroutine (the task's) uses a backend; no locks, channel
//     operations or goroutines on the access path.
//   - Every access is scoped to the current key (SetCurrentKey) and the
//     handle's namespace; a key group outside the backend's range is an
//     error, never silent.
//   - Timers fire in (timestamp, key group, key, namespace) order with
//     their key current; a timer is registered at most once.
//   - Iterate followed by Ingest reproduces the state of any key-group
//     range in any backend.
//   - The conformance suite in statebackendtest holds for every backend.
package statebackend
