// Package storage is where checkpoints and savepoints live: object storage
// through gocloud.dev/blob (file://, s3:// on any S3-compatible server,
// gs://, azblob://, and mem:// for tests), the directory layout under it,
// the `_metadata` file format, the reference-counted registry of files that
// incremental checkpoints share, and retention, recovery and savepoint
// disposal on top of them.
//
// Layout (docs/formats/checkpoint.md):
//
//	<storage>/<job-id>/chk-<n>/_metadata   written last: present means complete
//	<storage>/<job-id>/chk-<n>/<files>     owned by checkpoint n alone
//	<storage>/<job-id>/shared/<files>      incremental files used by several checkpoints
//	<savepoint-dir>/savepoint-<jobid6>-<random>/_metadata, <files>
//
// Who does what:
//   - TaskManagers write state files with Storage.Create or Storage.Upload
//     under CheckpointDir(job, n) or SharedDir(job) (or a savepoint
//     directory) and put the returned FileHandles, paths relative to the
//     storage (to the savepoint directory for savepoints), in their acks.
//   - The JobManager's checkpoint driver opens a JobStore (OpenJob, which
//     rebuilds the shared-file registry from the completed checkpoints in
//     storage), calls Complete on ActionFinalize, Discard on ActionDiscard
//     and Abort on ActionAbort / ActionDiscardLate.
//   - Recovery finds LatestCompleted; restore opens a checkpoint or
//     savepoint URL with OpenSnapshot and reads files from Snapshot.Files.
//
// Promises:
//   - A checkpoint directory is complete exactly when its `_metadata` is
//     present and decodes; `_metadata` is one object, written after every
//     other file, and deleted before any other file.
//   - JobStore.Complete writes `_metadata` only after checking that every
//     file it references is stored with its recorded size (a server that
//     reported a partial upload complete fails the checkpoint), and reads
//     it back; Verify repeats the file check before a restore. Failures
//     are *FileError / *MetadataError wrapping ErrCorrupt, naming the file.
//   - Open also opens any scheme a linked gocloud.dev/blob driver registered
//     on blob.DefaultURLMux (scheme.go), e.g. internal/blobfault's faulty://.
//   - `_metadata` is framed (magic, version, length, CRC32C): a truncated,
//     corrupt or newer-format file is reported as such (ErrCorrupt,
//     ErrNewerFormat), never half read. Every format version ever written
//     stays readable (golden fixtures in testdata/).
//   - A shared file is deleted only when no registered (retained, completed)
//     checkpoint references it. Savepoints are never registered, never
//     retained, and disposing of one deletes only the objects under its
//     directory.
//   - Nothing here starts a goroutine that outlives a call (the blob layer's
//     uploads finish in Close).
package storage
