// Package blobfault is a fault-injecting, operation-logging blob store for
// tests, in the spirit of Pebble's vfs/errorfs: a gocloud.dev/blob driver
// that wraps a real bucket (in memory or a directory) and, by rules that
// match an operation and a key pattern, makes writes fail (at create, write
// or close), lets only a prefix of an object land while Close reports
// success (a broken server), returns flipped bytes from reads, and makes
// listed objects vanish before they are read. Every operation is recorded
// in an op log, so a test can assert the exact order of creates, closes and
// deletes (for example that a checkpoint's `_metadata` lands last).
//
// A Store is registered under a process-wide name; the URL
// faulty://NAME/prefix opens it through blob.DefaultURLMux, which
// pkg/checkpoint/storage.Open consults for schemes it does not know, so the
// whole runtime (tasks, the JobManager of internal/minicluster) can be
// pointed at it with a checkpoint storage URL.
//
// Promises:
//   - Faults are deterministic: a rule fires on the matching operations it
//     is consulted on, after skipping the first After of them, Times times
//     (0: every time). Rules are consulted in the order they were added;
//     the first that fires decides.
//   - With no rule, a Store behaves exactly like its base bucket (the
//     checkpoint storage conformance suite runs against it).
//   - An injected write failure (create, write or close) leaves no object;
//     a Truncate fault leaves a shorter object and reports success.
//   - Injected errors wrap ErrInjected.
//   - Nothing here starts a goroutine.
package blobfault
