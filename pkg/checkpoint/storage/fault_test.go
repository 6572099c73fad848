package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/blobfault"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// Checkpoint storage under injected faults (internal/blobfault): a failed
// upload fails only its checkpoint; corrupt reads are detected and named;
// no checkpoint completes whose files are not all stored whole.

// newFaulty registers a fresh in-memory fault-injecting store.
func newFaulty(t *testing.T) *blobfault.Store {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	st, err := blobfault.NewMem(fmt.Sprintf("storage-%x", b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// faultyJob opens job "job1" on a fresh faulty store.
func faultyJob(t *testing.T) (*blobfault.Store, *Storage, *JobStore) {
	t.Helper()
	st := newFaulty(t)
	s, err := Open(context.Background(), st.URL("ck"), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	js, done, err := OpenJob(context.Background(), s, "job1")
	if err != nil || len(done) != 0 {
		t.Fatalf("open job: %v %v", done, err)
	}
	return st, s, js
}

// take is one subtask's part of checkpoint id as a task writes it: a shared
// file (uploaded from a local file) and an owned file, then the metadata
// the JobManager would complete. It returns the first write error.
func take(t *testing.T, s *Storage, id int64) (*checkpointv1.CheckpointMetadata, *checkpointv1.SubtaskState, error) {
	t.Helper()
	ctx := context.Background()
	local := filepath.Join(t.TempDir(), "000001.sst")
	if err := os.WriteFile(local, []byte(fmt.Sprintf("sst of checkpoint %d", id)), 0o666); err != nil {
		t.Fatal(err)
	}
	st := &checkpointv1.SubtaskState{Keyed: []*checkpointv1.KeyedStateHandle{{KeyGroupEnd: 127, Format: "pebble"}}}
	fh, err := s.Upload(ctx, SharedPath("job1", fmt.Sprintf("op-0-%d-000001.sst", id)), local)
	if err != nil {
		return nil, st, err
	}
	st.Keyed[0].Files = append(st.Keyed[0].Files, fh)
	own := CheckpointDir("job1", id) + "/op-0-MANIFEST"
	data := []byte(fmt.Sprintf("manifest %d", id))
	if err := s.WriteFile(ctx, own, data); err != nil {
		return nil, st, err
	}
	st.Keyed[0].Files = append(st.Keyed[0].Files, &checkpointv1.FileHandle{Path: own, Size: int64(len(data))})
	md := &checkpointv1.CheckpointMetadata{JobId: "job1", CheckpointId: id, TriggerTimeMs: time.Now().UnixMilli(),
		Operators: []*checkpointv1.OperatorState{{Uid: "op", Parallelism: 1, MaxParallelism: 128, Subtasks: []*checkpointv1.SubtaskState{st}}}}
	return md, st, nil
}

func completedIDs(t *testing.T, s *Storage) []int64 {
	t.Helper()
	all, err := ListCompleted(context.Background(), s, "job1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, c := range all {
		ids = append(ids, c.ID)
	}
	return ids
}

// A failed upload (at create, in a write, at close; of a shared or an owned
// file) fails that checkpoint: the driver aborts it, nothing of it stays,
// and the store takes the next checkpoint.
func TestFaultFailedUploadAbortsOnlyThatCheckpoint(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		op  blobfault.Op
		key string
	}{
		{blobfault.OpCreate, "**/shared/op-0-2-*"},
		{blobfault.OpWrite, "**/shared/op-0-2-*"},
		{blobfault.OpClose, "**/shared/op-0-2-*"},
		{blobfault.OpCreate, "**/chk-2/*"},
		{blobfault.OpClose, "**/chk-2/*"},
	} {
		t.Run(c.op.String()+" "+c.key, func(t *testing.T) {
			st, s, js := faultyJob(t)
			md1, _, err := take(t, s, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := js.Complete(ctx, md1); err != nil {
				t.Fatal(err)
			}
			st.Inject(blobfault.Rule{Op: c.op, Key: c.key, Fault: blobfault.Fail(nil), Times: 1})
			_, sub, err := take(t, s, 2)
			if !errors.Is(err, blobfault.ErrInjected) || !strings.Contains(err.Error(), s.URL()+"/job1/") {
				t.Fatalf("upload error %v: want the injected fault, naming the object", err)
			}
			if err := js.Abort(ctx, 2, sub); err != nil {
				t.Fatalf("abort after a failed upload: %v", err)
			}
			if left := names(t, s, "job1/chk-2"); len(left) != 0 {
				t.Fatalf("chk-2 left %v", left)
			}
			md3, _, err := take(t, s, 3)
			if err != nil {
				t.Fatal(err)
			}
			if err := js.Complete(ctx, md3); err != nil {
				t.Fatalf("the checkpoint after a failed one: %v", err)
			}
			if ids := completedIDs(t, s); !slices.Equal(ids, []int64{1, 3}) {
				t.Fatalf("completed %v, want [1 3]", ids)
			}
			if got := names(t, s, "job1/shared"); !slices.Equal(got, []string{"job1/shared/op-0-1-000001.sst", "job1/shared/op-0-3-000001.sst"}) {
				t.Fatalf("shared files %v", got)
			}
		})
	}
}

// A failed `_metadata` write fails Complete with the fault, registers
// nothing, and leaves the checkpoint abortable; the next one completes.
func TestFaultFailedMetadataWrite(t *testing.T) {
	ctx := context.Background()
	for _, op := range []blobfault.Op{blobfault.OpCreate, blobfault.OpClose} {
		t.Run(op.String(), func(t *testing.T) {
			st, s, js := faultyJob(t)
			st.Inject(blobfault.Rule{Op: op, Key: "**/chk-1/_metadata", Fault: blobfault.Fail(nil)})
			md1, sub, err := take(t, s, 1)
			if err != nil {
				t.Fatal(err)
			}
			err = js.Complete(ctx, md1)
			if !errors.Is(err, blobfault.ErrInjected) || !strings.Contains(err.Error(), s.URLOf("job1/chk-1/_metadata")) {
				t.Fatalf("complete: %v, want the injected fault naming the _metadata", err)
			}
			if len(js.Registry().Checkpoints()) != 0 || len(completedIDs(t, s)) != 0 {
				t.Fatal("a checkpoint whose _metadata failed is registered or listed")
			}
			if err := js.Abort(ctx, 1, sub); err != nil {
				t.Fatal(err)
			}
			md2, _, err := take(t, s, 2)
			if err != nil {
				t.Fatal(err)
			}
			if err := js.Complete(ctx, md2); err != nil {
				t.Fatal(err)
			}
			if ids := completedIDs(t, s); !slices.Equal(ids, []int64{2}) {
				t.Fatalf("completed %v", ids)
			}
			if got := names(t, s, "job1"); !slices.Equal(got, []string{"job1/chk-2/_metadata", "job1/chk-2/op-0-MANIFEST", "job1/shared/op-0-2-000001.sst"}) {
				t.Fatalf("left %v", got)
			}
		})
	}
}

// A server that stores only part of a state file and reports success: the
// recorded size catches it, Complete refuses, nothing is listed, and the
// next checkpoint completes.
func TestFaultPartialStateFileNeverCompletes(t *testing.T) {
	ctx := context.Background()
	for _, key := range []string{"**/shared/op-0-2-*", "**/chk-2/op-0-MANIFEST"} {
		t.Run(key, func(t *testing.T) {
			st, s, js := faultyJob(t)
			st.Inject(blobfault.Rule{Op: blobfault.OpClose, Key: key, Fault: blobfault.Truncate(-3)})
			md2, sub, err := take(t, s, 2)
			if err != nil {
				t.Fatalf("a truncating server reports success: %v", err)
			}
			err = js.Complete(ctx, md2)
			var fe *FileError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &fe) || !keyMatches(key, fe.File) || fe.Actual != fe.Size-3 {
				t.Fatalf("complete over a truncated file: %v (%+v)", err, fe)
			}
			if !strings.Contains(err.Error(), fe.FileURL) || !strings.Contains(err.Error(), "_metadata records") {
				t.Fatalf("the error does not name the file and sizes: %v", err)
			}
			if ok, _ := s.Exists(ctx, "job1/chk-2/_metadata"); ok {
				t.Fatal("_metadata written over a truncated file")
			}
			if ids := completedIDs(t, s); len(ids) != 0 || len(js.Registry().Checkpoints()) != 0 {
				t.Fatalf("listed %v, registered %v", ids, js.Registry().Checkpoints())
			}
			if err := js.Abort(ctx, 2, sub); err != nil {
				t.Fatal(err)
			}
			md3, _, err := take(t, s, 3)
			if err != nil {
				t.Fatal(err)
			}
			if err := js.Complete(ctx, md3); err != nil {
				t.Fatal(err)
			}
			if ids := completedIDs(t, s); !slices.Equal(ids, []int64{3}) {
				t.Fatalf("completed %v", ids)
			}
		})
	}
}

// keyMatches is blobfault.Match on a FileHandle path (the store's keys
// carry the storage prefix "ck/").
func keyMatches(pattern, rel string) bool { return blobfault.Match(pattern, "ck/"+rel) }

// A server that truncates `_metadata` itself and reports success: Complete
// reads it back, fails, and the checkpoint is not complete.
func TestFaultPartialMetadataNeverCompletes(t *testing.T) {
	ctx := context.Background()
	st, s, js := faultyJob(t)
	st.Inject(blobfault.Rule{Op: blobfault.OpClose, Key: "**/chk-1/_metadata", Fault: blobfault.Truncate(-1), Times: 1})
	md1, sub, err := take(t, s, 1)
	if err != nil {
		t.Fatal(err)
	}
	err = js.Complete(ctx, md1)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), s.URLOf("job1/chk-1/_metadata")) {
		t.Fatalf("complete with a truncated _metadata: %v", err)
	}
	if ok, _ := s.Exists(ctx, "job1/chk-1/_metadata"); ok {
		t.Fatal("the truncated _metadata stayed")
	}
	if len(js.Registry().Checkpoints()) != 0 || len(completedIDs(t, s)) != 0 {
		t.Fatal("the checkpoint is registered or listed")
	}
	if err := js.Abort(ctx, 1, sub); err != nil {
		t.Fatal(err)
	}
	md2, _, err := take(t, s, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.Complete(ctx, md2); err != nil {
		t.Fatal(err)
	}
	// The same for a savepoint's metadata, written with WriteMetadata.
	st.Inject(blobfault.Rule{Op: blobfault.OpClose, Key: "**/sp/_metadata", Fault: blobfault.Truncate(10), Times: 1})
	sp, err := s.Sub("sp")
	if err != nil {
		t.Fatal(err)
	}
	md := &checkpointv1.CheckpointMetadata{JobId: "job1", CheckpointId: 3, Savepoint: true}
	if err := sp.WriteMetadata(ctx, "", md); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("savepoint metadata truncated: %v", err)
	}
	if err := sp.WriteMetadata(ctx, "", md); err != nil {
		t.Fatalf("rewrite: %v", err)
	}
}

// A flipped byte in a read of `_metadata` is caught by its CRC32C and
// named; listings skip the checkpoint with a logged reason; the next read
// (the fault is transient) succeeds.
func TestFaultCorruptMetadataRead(t *testing.T) {
	ctx := context.Background()
	st, s, js := faultyJob(t)
	for id := int64(1); id <= 2; id++ {
		md, _, err := take(t, s, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := js.Complete(ctx, md); err != nil {
			t.Fatal(err)
		}
	}
	for _, at := range []int64{0, 9, 20, -1} { // magic, version, payload, checksum
		st.Inject(blobfault.Rule{Op: blobfault.OpRead, Key: "**/chk-2/_metadata", Fault: blobfault.Flip(at), Times: 1})
		_, err := ReadMetadata(ctx, s.URLOf("job1/chk-2"))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checkpoint "+s.URLOf("job1/chk-2/_metadata")+" is corrupt: ") {
			t.Errorf("flip at %d: %v", at, err)
		}
	}
	st.Inject(blobfault.Rule{Op: blobfault.OpRead, Key: "**/chk-2/_metadata", Fault: blobfault.Flip(30), Times: 1})
	if _, err := OpenSnapshot(ctx, s.URLOf("job1/chk-2")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open snapshot: %v", err)
	}
	// A listing reads a corrupt _metadata again before it skips it.
	st.Inject(blobfault.Rule{Op: blobfault.OpRead, Key: "**/chk-2/_metadata", Fault: blobfault.Flip(30), Times: 1})
	if ids := completedIDs(t, s); !slices.Equal(ids, []int64{1, 2}) {
		t.Fatalf("listed %v after one corrupt read of chk-2, want [1 2]", ids)
	}
	st.Inject(blobfault.Rule{Op: blobfault.OpRead, Key: "**/chk-2/_metadata", Fault: blobfault.Flip(30), Times: 2})
	if ids := completedIDs(t, s); !slices.Equal(ids, []int64{1}) {
		t.Fatalf("listed %v with chk-2's _metadata corrupt, want [1]", ids)
	}
}

// Files vanishing between a listing and the read or delete that follows:
// clear errors (or none where the operation's goal is reached), no panic.
func TestFaultVanishBetweenListAndRead(t *testing.T) {
	ctx := context.Background()
	st, s, js := faultyJob(t)
	for id := int64(1); id <= 3; id++ {
		md, _, err := take(t, s, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := js.Complete(ctx, md); err != nil {
			t.Fatal(err)
		}
	}
	// Discarded by someone else while listing: skipped as incomplete.
	st.Inject(blobfault.Rule{Op: blobfault.OpList, Key: "**/chk-2/_metadata", Fault: blobfault.Vanish(), Times: 1})
	if ids := completedIDs(t, s); !slices.Equal(ids, []int64{1, 3}) {
		t.Fatalf("listed %v, want [1 3]", ids)
	}
	// A directory delete whose files vanish after its listing: done.
	st.Inject(blobfault.Rule{Op: blobfault.OpList, Key: "**/chk-2/*", Fault: blobfault.Vanish()})
	if _, err := s.DeleteDir(ctx, "job1/chk-2"); err != nil {
		t.Fatalf("delete a directory whose files vanished: %v", err)
	}
	st.Clear()
	// A checkpoint whose state file vanished after it completed: Verify
	// names the file before a restore trips over it; Download names it too.
	sn, err := OpenSnapshot(ctx, s.URLOf("job1/chk-3"))
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	if err := Verify(ctx, sn); err != nil {
		t.Fatalf("verify an intact checkpoint: %v", err)
	}
	st.Inject(blobfault.Rule{Op: blobfault.OpList, Key: "**/chk-3/op-0-MANIFEST", Fault: blobfault.Vanish(), Times: 1})
	if _, err := s.List(ctx, "job1/chk-3"); err != nil {
		t.Fatal(err)
	}
	err = Verify(ctx, sn)
	var fe *FileError
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNotFound) || !errors.As(err, &fe) || fe.File != "job1/chk-3/op-0-MANIFEST" {
		t.Fatalf("verify with a vanished file: %v", err)
	}
	if want := "checkpoint " + s.URLOf("job1/chk-3") + " is corrupt: its file " + s.URLOf("job1/chk-3/op-0-MANIFEST") + " is missing"; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	if err := sn.Files.Download(ctx, fe.File, filepath.Join(t.TempDir(), "m")); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), fe.FileURL) {
		t.Fatalf("download a vanished file: %v", err)
	}
}

// Verify flags a checkpoint whose file was replaced by a shorter one after
// it completed, and a handle whose path leaves the storage.
func TestVerify(t *testing.T) {
	ctx := context.Background()
	_, s, js := faultyJob(t)
	md, _, err := take(t, s, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.Complete(ctx, md); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFiles(ctx, s, md); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile(ctx, "job1/chk-1/op-0-MANIFEST", []byte("short")); err != nil {
		t.Fatal(err)
	}
	sn, err := OpenSnapshot(ctx, s.URLOf("job1/chk-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	err = Verify(ctx, sn)
	var fe *FileError
	if !errors.As(err, &fe) || errors.Is(err, ErrNotFound) || fe.Actual != 5 || fe.Size != int64(len("manifest 1")) {
		t.Fatalf("verify a shortened file: %v", err)
	}
	bad := &checkpointv1.CheckpointMetadata{JobId: "job1", CheckpointId: 9, Operators: []*checkpointv1.OperatorState{{Subtasks: []*checkpointv1.SubtaskState{{
		OperatorState: []*checkpointv1.OperatorStateHandle{{File: &checkpointv1.FileHandle{Path: "../elsewhere"}}}}}}}}
	if err := VerifyFiles(ctx, s, bad); !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrBadPath) {
		t.Fatalf("a path outside the storage: %v", err)
	}
}

// A flipped bit in the version field is corruption (the checksum says so),
// not a newer format; a newer version with a checksum that holds, or
// another framing, is still a newer format.
func TestDecodeFlippedVersion(t *testing.T) {
	good, err := EncodeMetadata(goldenV1())
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(good)
	flipped[9] ^= 0xff
	if _, err := DecodeMetadata(flipped); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checksum mismatch, and its version field reads 16711681") {
		t.Fatalf("flipped version byte: %v", err)
	}
	payload := good[16 : len(good)-4]
	if _, err := DecodeMetadata(reframe(7, payload)); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("newer version, same framing: %v", err)
	}
	other := append(slices.Clone(reframe(7, payload)), 1, 2, 3) // a framing this Flow does not know
	if _, err := DecodeMetadata(other); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("newer version, another framing: %v", err)
	}
}

// A JobManager restart that reads one completed checkpoint's `_metadata`
// corrupt once reads it again: skipping it would drop its references from
// the rebuilt shared-file registry, and discarding the checkpoint before it
// would delete shared files it still uses.
func TestFaultCorruptReadAtRestartKeepsSharedFiles(t *testing.T) {
	ctx := context.Background()
	st, s, js := faultyJob(t)
	// 1: a b; 2: b c.
	if err := js.Complete(ctx, ckpt(t, s, "job1", 1, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := js.Complete(ctx, ckpt(t, s, "job1", 2, "b", "c")); err != nil {
		t.Fatal(err)
	}
	st.Inject(blobfault.Rule{Op: blobfault.OpRead, Key: "**/chk-2/_metadata", Fault: blobfault.Flip(20), Times: 1})
	js2, done, err := OpenJob(ctx, s, "job1")
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 {
		t.Fatalf("completed %d checkpoints after a restart with one corrupt read, want 2", len(done))
	}
	if err := js2.Discard(ctx, 1); err != nil {
		t.Fatal(err)
	}
	sn, err := OpenSnapshot(ctx, s.URLOf("job1/chk-2"))
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	if err := Verify(ctx, sn); err != nil {
		t.Fatalf("chk-2 lost files: %v", err)
	}
}
