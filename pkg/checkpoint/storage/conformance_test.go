package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// testLogger sends the package's logs to t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// backend opens a fresh, empty storage directory and its URL.
type backend struct {
	name string
	// base returns the URL of a fresh directory; urlOf(base, "x/y") the URL
	// of a subdirectory.
	base func(t *testing.T) string
	// bigSize is the size of the streamed-upload test object.
	bigSize int
}

// runConformance runs every storage behavior against one backend.
func runConformance(t *testing.T, b backend) {
	ctx := context.Background()
	open := func(t *testing.T) *Storage {
		t.Helper()
		s, err := Open(ctx, b.base(t), WithLogger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}

	t.Run("objects", func(t *testing.T) {
		s := open(t)
		if ok, err := s.Exists(ctx, "job/chk-1/a"); err != nil || ok {
			t.Fatalf("exists before write: %v %v", ok, err)
		}
		if _, err := s.ReadFile(ctx, "job/chk-1/a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("read missing: %v", err)
		}
		if _, err := s.Open(ctx, "job/chk-1/a"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), s.URLOf("job/chk-1/a")) {
			t.Fatalf("open missing: %v", err)
		}
		if err := s.WriteFile(ctx, "job/chk-1/a", []byte("alpha")); err != nil {
			t.Fatal(err)
		}
		w, err := s.Create(ctx, "job/chk-1/b")
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := io.WriteString(w, "beta"); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteFile(ctx, "job/chk-10/c", []byte("c")); err != nil {
			t.Fatal(err)
		}
		got, err := s.ReadFile(ctx, "job/chk-1/b")
		if err != nil || string(got) != "betabetabeta" {
			t.Fatalf("read back %q %v", got, err)
		}
		r, err := s.Open(ctx, "job/chk-1/a")
		if err != nil {
			t.Fatal(err)
		}
		got, err = io.ReadAll(r)
		if err != nil || string(got) != "alpha" || r.Close() != nil {
			t.Fatalf("open read %q %v", got, err)
		}
		if ok, err := s.Exists(ctx, "job/chk-1/a"); err != nil || !ok {
			t.Fatalf("exists after write: %v %v", ok, err)
		}
		// chk-1 is a directory, not an object; its listing does not include chk-10.
		if ok, err := s.Exists(ctx, "job/chk-1"); err != nil || ok {
			t.Fatalf("a directory exists as an object: %v %v", ok, err)
		}
		objs, err := s.List(ctx, "job/chk-1")
		if err != nil {
			t.Fatal(err)
		}
		if want := []Object{{"job/chk-1/a", 5}, {"job/chk-1/b", 12}}; !slices.Equal(objs, want) {
			t.Fatalf("list %v, want %v", objs, want)
		}
		all, err := s.List(ctx, "")
		if err != nil || len(all) != 3 {
			t.Fatalf("list all %v %v", all, err)
		}
		if err := s.Delete(ctx, "job/chk-1/a"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "job/chk-1/a"); err != nil {
			t.Fatalf("deleting a missing object: %v", err)
		}
		if ok, _ := s.Exists(ctx, "job/chk-1/a"); ok {
			t.Fatal("deleted object exists")
		}
		n, err := s.DeleteDir(ctx, "job/chk-1")
		if err != nil || n != 1 {
			t.Fatalf("delete dir: %d %v", n, err)
		}
		if objs, _ := s.List(ctx, "job"); len(objs) != 1 || objs[0].Path != "job/chk-10/c" {
			t.Fatalf("after delete dir: %v", objs)
		}
		if _, err := s.DeleteDir(ctx, ""); !errors.Is(err, ErrBadPath) {
			t.Fatalf("deleting the whole storage: %v", err)
		}
	})

	t.Run("bad paths", func(t *testing.T) {
		s := open(t)
		for _, p := range []string{"", "/abs", "../up", "a/../../b", "a//b", "a/./b", "..", "a/", `a\b`} {
			if err := s.WriteFile(ctx, p, nil); !errors.Is(err, ErrBadPath) {
				t.Errorf("write %q: %v", p, err)
			}
			if _, err := s.Open(ctx, p); !errors.Is(err, ErrBadPath) {
				t.Errorf("open %q: %v", p, err)
			}
		}
	})

	t.Run("upload download", func(t *testing.T) {
		s := open(t)
		local := filepath.Join(t.TempDir(), "000007.sst")
		data := bytes.Repeat([]byte("sst-block "), 1000)
		if err := os.WriteFile(local, data, 0o666); err != nil {
			t.Fatal(err)
		}
		fh, err := s.Upload(ctx, SharedPath("job", "op-0-000007.sst"), local)
		if err != nil {
			t.Fatal(err)
		}
		if want := (&checkpointv1.FileHandle{Path: "job/shared/op-0-000007.sst", Size: int64(len(data)), Shared: true, LocalName: "000007.sst"}); !proto.Equal(fh, want) {
			t.Fatalf("handle %v, want %v", fh, want)
		}
		fh2, err := s.Upload(ctx, CheckpointDir("job", 3)+"/MANIFEST", local)
		if err != nil || fh2.GetShared() {
			t.Fatalf("task-owned upload %v %v", fh2, err)
		}
		dst := filepath.Join(t.TempDir(), "restore", "db", "000007.sst")
		if err := s.Download(ctx, fh.GetPath(), dst); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("downloaded %d bytes, %v", len(got), err)
		}
		if err := s.Download(ctx, "job/shared/missing", filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("download missing: %v", err)
		}
		if _, err := s.Upload(ctx, "job/shared/x", filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("upload missing local file: %v", err)
		}
		entries, _ := os.ReadDir(filepath.Dir(dst))
		if len(entries) != 1 {
			t.Fatalf("download left temporary files: %v", entries)
		}
	})

	t.Run("streamed multi-megabyte write", func(t *testing.T) {
		s, err := Open(ctx, b.base(t), WithLogger(testLogger(t)), WithPartSize(5<<20))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		w, err := s.Create(ctx, "job/chk-1/big")
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		chunk := make([]byte, 64<<10+13) // not a divisor of the part size
		written := 0
		for written < b.bigSize {
			n := min(len(chunk), b.bigSize-written)
			_, _ = rand.Read(chunk[:n])
			h.Write(chunk[:n])
			if _, err := w.Write(chunk[:n]); err != nil {
				t.Fatal(err)
			}
			written += n
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := s.Open(ctx, "job/chk-1/big")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		h2 := sha256.New()
		n, err := io.Copy(h2, r)
		if err != nil || n != int64(b.bigSize) || !bytes.Equal(h.Sum(nil), h2.Sum(nil)) {
			t.Fatalf("read back %d of %d bytes, equal %t, %v", n, b.bigSize, bytes.Equal(h.Sum(nil), h2.Sum(nil)), err)
		}
	})

	t.Run("abandoned write", func(t *testing.T) {
		s := open(t)
		wctx, cancel := context.WithCancel(ctx)
		w, err := s.Create(wctx, "job/chk-2/partial")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("half")); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := w.Close(); err == nil {
			t.Fatal("a write whose context was canceled closed without error")
		}
		if ok, err := s.Exists(ctx, "job/chk-2/partial"); err != nil || ok {
			t.Fatalf("abandoned object exists: %v %v", ok, err)
		}
		// The same after enough bytes for a multipart upload to be under way.
		wctx, cancel = context.WithCancel(ctx)
		defer cancel()
		w, err = s.Create(wctx, "job/chk-2/big-partial")
		if err != nil {
			t.Fatal(err)
		}
		chunk := make([]byte, 1<<20)
		for range b.bigSize >> 20 {
			if _, err := w.Write(chunk); err != nil {
				break // the upload may notice the cancellation early
			}
		}
		cancel()
		if err := w.Close(); err == nil {
			t.Fatal("a big write whose context was canceled closed without error")
		}
		if ok, err := s.Exists(ctx, "job/chk-2/big-partial"); err != nil || ok {
			t.Fatalf("abandoned big object exists: %v %v", ok, err)
		}
	})

	t.Run("metadata and snapshots", func(t *testing.T) {
		base := b.base(t)
		s, err := Open(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		md := goldenV1()
		dir := s.CheckpointDir(md.JobId, md.CheckpointId)
		if dir != "5f2c9a1e0b7d4c38/chk-42" {
			t.Fatalf("checkpoint dir %q", dir)
		}
		if err := s.WriteFile(ctx, dir+"/count-uid-1-keyed", []byte("state")); err != nil {
			t.Fatal(err)
		}
		// Files but no _metadata: incomplete.
		_, err = ReadMetadata(ctx, s.URLOf(dir))
		if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "checkpoint "+s.URLOf(dir)+" is incomplete (no _metadata): pick a completed one (flowctl checkpoints JOB_ID)") {
			t.Fatalf("incomplete: %v", err)
		}
		if _, err := ReadMetadata(ctx, s.URLOf("5f2c9a1e0b7d4c38/chk-41")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing checkpoint: %v", err)
		}
		if err := s.WriteMetadata(ctx, dir, md); err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{s.URLOf(dir), s.URLOf(dir + "/_metadata")} {
			sn, err := OpenSnapshot(ctx, u)
			if err != nil {
				t.Fatalf("open snapshot %s: %v", u, err)
			}
			if !proto.Equal(sn.Metadata, md) || sn.Dir != s.URLOf(dir) {
				t.Fatalf("snapshot %s: dir %s", u, sn.Dir)
			}
			// File handles resolve against the storage base.
			got, err := sn.Files.ReadFile(ctx, "5f2c9a1e0b7d4c38/chk-42/count-uid-1-keyed")
			if err != nil || string(got) != "state" {
				t.Fatalf("read through snapshot: %q %v", got, err)
			}
			if sn.Files.URL() != s.URL() {
				t.Fatalf("snapshot files at %s, want %s", sn.Files.URL(), s.URL())
			}
			if err := sn.Close(); err != nil {
				t.Fatal(err)
			}
		}
		// Corrupt it: the error names the file and the problem.
		raw, _ := s.ReadFile(ctx, dir+"/_metadata")
		raw[len(raw)/2] ^= 0xff
		if err := s.WriteFile(ctx, dir+"/_metadata", raw); err != nil {
			t.Fatal(err)
		}
		_, err = ReadMetadata(ctx, s.URLOf(dir))
		if want := "checkpoint " + s.URLOf(dir+"/_metadata") + " is corrupt: checksum mismatch"; !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
			t.Fatalf("corrupt: %v, want %q", err, want)
		}
		// A checkpoint copied elsewhere is refused (its paths are relative to its storage).
		good, _ := EncodeMetadata(md)
		if err := s.WriteFile(ctx, "elsewhere/chk-42/_metadata", good); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSnapshot(ctx, s.URLOf("elsewhere/chk-42")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("moved checkpoint: %v", err)
		}
	})

	t.Run("savepoints", func(t *testing.T) {
		base := b.base(t)
		s, err := Open(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		name := NewSavepointDirName("5f2c9a1e0b7d4c38")
		if !strings.HasPrefix(name, "savepoint-5f2c9a-") || len(name) != len("savepoint-5f2c9a-")+12 {
			t.Fatalf("savepoint dir name %q", name)
		}
		sp, err := s.Sub(name)
		if err != nil {
			t.Fatal(err)
		}
		if sp.URL() != s.URLOf(name) {
			t.Fatalf("sub URL %s, want %s", sp.URL(), s.URLOf(name))
		}
		md := goldenV1()
		md.Savepoint = true
		md.Operators[1].Subtasks[1].Keyed[0].Files[0].Path = "count-uid/1/keyed"
		if err := sp.WriteFile(ctx, "count-uid/1/keyed", []byte("canonical")); err != nil {
			t.Fatal(err)
		}
		if err := sp.WriteMetadata(ctx, ".", md); !errors.Is(err, ErrBadPath) {
			t.Fatalf("metadata written to the non-clean path \".\": %v", err)
		}
		if err := sp.WriteMetadata(ctx, "", md); err != nil {
			t.Fatal(err)
		}
		if back, err := sp.ReadMetadata(ctx, ""); err != nil || !proto.Equal(back, md) {
			t.Fatalf("read back the savepoint metadata: %v", err)
		}
		// A neighbor whose name extends this one, and a checkpoint: untouched by dispose.
		if err := s.WriteFile(ctx, name+"0/_metadata", []byte("neighbor")); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteFile(ctx, "job/chk-1/x", []byte("x")); err != nil {
			t.Fatal(err)
		}
		sn, err := OpenSnapshot(ctx, s.URLOf(name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := sn.Files.ReadFile(ctx, "count-uid/1/keyed")
		if err != nil || string(got) != "canonical" || !sn.Metadata.GetSavepoint() {
			t.Fatalf("savepoint file %q %v", got, err)
		}
		_ = sn.Close()
		if err := DisposeSavepoint(ctx, s.URLOf(name+"/_metadata")); err != nil {
			t.Fatal(err)
		}
		objs, err := s.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 2 || objs[0].Path != "job/chk-1/x" || objs[1].Path != name+"0/_metadata" {
			t.Fatalf("after dispose: %v", objs)
		}
		if err := DisposeSavepoint(ctx, s.URLOf(name)); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrIncomplete) {
			t.Fatalf("dispose twice: %v", err)
		}
		// A checkpoint is not disposed as a savepoint.
		ck := goldenV1()
		cdir := CheckpointDir(ck.JobId, ck.CheckpointId)
		if err := s.WriteMetadata(ctx, cdir, ck); err != nil {
			t.Fatal(err)
		}
		if err := DisposeSavepoint(ctx, s.URLOf(cdir)); err == nil || !strings.Contains(err.Error(), "not a savepoint") {
			t.Fatalf("disposed a checkpoint: %v", err)
		}
		if ok, _ := s.Exists(ctx, cdir+"/_metadata"); !ok {
			t.Fatal("dispose deleted a checkpoint")
		}
	})

	t.Run("retention and recovery", func(t *testing.T) {
		testRetention(t, b.base(t))
	})
}

// ckpt builds the metadata of checkpoint id of job with one subtask that
// references the shared files and owns one file, and uploads them all.
func ckpt(t *testing.T, s *Storage, job string, id int64, shared ...string) *checkpointv1.CheckpointMetadata {
	t.Helper()
	ctx := context.Background()
	dir := CheckpointDir(job, id)
	files := []*checkpointv1.FileHandle{}
	for _, name := range shared {
		p := SharedPath(job, name)
		if ok, _ := s.Exists(ctx, p); !ok {
			if err := s.WriteFile(ctx, p, []byte(name)); err != nil {
				t.Fatal(err)
			}
		}
		files = append(files, &checkpointv1.FileHandle{Path: p, Size: int64(len(name)), Shared: true})
	}
	own := dir + "/MANIFEST"
	if err := s.WriteFile(ctx, own, []byte("manifest")); err != nil {
		t.Fatal(err)
	}
	files = append(files, &checkpointv1.FileHandle{Path: own, Size: 8})
	return &checkpointv1.CheckpointMetadata{
		JobId: job, CheckpointId: id, TriggerTimeMs: time.Now().UnixMilli(),
		Operators: []*checkpointv1.OperatorState{{Uid: "op", Parallelism: 1, MaxParallelism: 128, Subtasks: []*checkpointv1.SubtaskState{{
			Keyed: []*checkpointv1.KeyedStateHandle{{KeyGroupEnd: 127, Format: "pebble", Files: files}},
		}}}},
	}
}

func names(t *testing.T, s *Storage, dir string) []string {
	t.Helper()
	objs, err := s.List(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, o.Path)
	}
	return out
}

func testRetention(t *testing.T, base string) {
	ctx := context.Background()
	s, err := Open(ctx, base, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const job = "job1"
	if _, _, err := LatestCompleted(ctx, s, job); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("latest of an empty job: %v", err)
	}
	js, done, err := OpenJob(ctx, s, job)
	if err != nil || len(done) != 0 {
		t.Fatalf("open job: %v %v", done, err)
	}
	// 1: a b; 2: a b c; 3: b c d (a no longer used).
	for _, c := range []struct {
		id     int64
		shared []string
	}{{1, []string{"a", "b"}}, {2, []string{"a", "b", "c"}}, {3, []string{"b", "c", "d"}}} {
		if err := js.Complete(ctx, ckpt(t, s, job, c.id, c.shared...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := js.Complete(ctx, ckpt(t, s, job, 3)); err == nil {
		t.Fatal("completed checkpoint 3 twice")
	}
	if err := js.Complete(ctx, ckpt(t, s, "other", 4)); err == nil {
		t.Fatal("completed another job's checkpoint")
	}
	if r := js.Registry(); r.Refs("job1/shared/a") != 2 || r.Refs("job1/shared/b") != 3 || r.Refs("job1/shared/d") != 1 {
		t.Fatalf("refs a=%d b=%d d=%d", r.Refs("job1/shared/a"), r.Refs("job1/shared/b"), r.Refs("job1/shared/d"))
	}
	// Pending checkpoint 4 wrote files but no metadata; 5 is corrupt.
	if err := s.WriteFile(ctx, CheckpointDir(job, 4)+"/MANIFEST", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile(ctx, CheckpointDir(job, 5)+"/_metadata", []byte("FLOWCKPT garbage")); err != nil {
		t.Fatal(err)
	}
	id, u, err := js.LatestCompleted(ctx)
	if err != nil || id != 3 || u != s.URLOf("job1/chk-3") {
		t.Fatalf("latest: %d %s %v", id, u, err)
	}
	if md, err := ReadMetadata(ctx, u); err != nil || md.GetCheckpointId() != 3 {
		t.Fatalf("read latest: %v", err)
	}

	// Retain 2: discard 1. Nothing shared is deleted: a and b are used by 2.
	if err := js.Discard(ctx, 1); err != nil {
		t.Fatal(err)
	}
	want := []string{"job1/shared/a", "job1/shared/b", "job1/shared/c", "job1/shared/d"}
	if got := names(t, s, "job1/shared"); !slices.Equal(got, want) {
		t.Fatalf("shared after discarding 1: %v", got)
	}
	if got := names(t, s, "job1/chk-1"); len(got) != 0 {
		t.Fatalf("chk-1 left: %v", got)
	}
	// A JobManager restart rebuilds the same registry from storage.
	js2, done, err := OpenJob(ctx, s, job)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 || done[0].ID != 2 || done[1].ID != 3 || done[1].URL != s.URLOf("job1/chk-3") {
		t.Fatalf("completed after restart: %+v", done)
	}
	reg, err := RebuildRegistry(ctx, s, job)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range want {
		if reg.Refs(p) != js.Registry().Refs(p) || js2.Registry().Refs(p) != reg.Refs(p) {
			t.Fatalf("rebuilt refs of %s: %d, live %d", p, reg.Refs(p), js.Registry().Refs(p))
		}
	}
	// Discard 2 on the rebuilt store: a is unreferenced now, b c d stay.
	if err := js2.Discard(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if got := names(t, s, "job1/shared"); !slices.Equal(got, want[1:]) {
		t.Fatalf("shared after discarding 2: %v", got)
	}
	// Abort of pending 4 with a fresh shared file e and the reused b: e goes, b stays.
	if err := s.WriteFile(ctx, SharedPath(job, "e"), []byte("e")); err != nil {
		t.Fatal(err)
	}
	st := &checkpointv1.SubtaskState{Keyed: []*checkpointv1.KeyedStateHandle{{Files: []*checkpointv1.FileHandle{
		{Path: SharedPath(job, "b"), Shared: true}, {Path: SharedPath(job, "e"), Shared: true}, {Path: CheckpointDir(job, 4) + "/MANIFEST"},
	}}}}
	if err := js2.Abort(ctx, 4, st); err != nil {
		t.Fatal(err)
	}
	if err := js2.Abort(ctx, 3); err == nil {
		t.Fatal("aborted a completed checkpoint")
	}
	if got := names(t, s, "job1/shared"); !slices.Equal(got, want[1:]) {
		t.Fatalf("shared after aborting 4: %v", got)
	}
	if got := names(t, s, "job1/chk-4"); len(got) != 0 {
		t.Fatalf("chk-4 left: %v", got)
	}
	// A late acknowledgement of completed checkpoint 3 repeating one of its
	// files and bringing a new one: only the new one goes.
	late := &checkpointv1.SubtaskState{Keyed: []*checkpointv1.KeyedStateHandle{{Files: []*checkpointv1.FileHandle{
		{Path: CheckpointDir(job, 3) + "/MANIFEST"}, {Path: CheckpointDir(job, 3) + "/late"},
		{Path: SharedPath(job, "c"), Shared: true}, {Path: SharedPath(job, "late"), Shared: true},
	}}}}
	for _, p := range []string{CheckpointDir(job, 3) + "/late", SharedPath(job, "late")} {
		if err := s.WriteFile(ctx, p, []byte("late")); err != nil {
			t.Fatal(err)
		}
	}
	if err := js2.DiscardLate(ctx, 3, late); err != nil {
		t.Fatal(err)
	}
	if got := names(t, s, "job1/chk-3"); !slices.Equal(got, []string{"job1/chk-3/MANIFEST", "job1/chk-3/_metadata"}) {
		t.Fatalf("chk-3 after a late ack: %v", got)
	}
	if got := names(t, s, "job1/shared"); !slices.Equal(got, want[1:]) {
		t.Fatalf("shared after a late ack: %v", got)
	}
	// Discard 3, the last: every shared file goes. Only the corrupt chk-5 stays.
	if err := js2.Discard(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if got := names(t, s, "job1"); !slices.Equal(got, []string{"job1/chk-5/_metadata"}) {
		t.Fatalf("left after discarding everything: %v", got)
	}
	if _, _, err := LatestCompleted(ctx, s, job); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("latest with only a corrupt checkpoint: %v", err)
	}
	if _, err := ListCompleted(ctx, s, "../x"); !errors.Is(err, ErrBadPath) {
		t.Fatalf("bad job id: %v", err)
	}
}

func TestFileStorage(t *testing.T) {
	runConformance(t, backend{
		name:    "file",
		base:    func(t *testing.T) string { return "file://" + filepath.ToSlash(t.TempDir()) + "/checkpoints" },
		bigSize: 12 << 20,
	})
}

func TestMemStorage(t *testing.T) {
	runConformance(t, backend{
		name: "mem",
		base: func(t *testing.T) string {
			var b [8]byte
			_, _ = rand.Read(b[:])
			return fmt.Sprintf("mem://t%x/checkpoints", b)
		},
		bigSize: 12 << 20,
	})
}

// TestFaultyStorage runs the suite through internal/blobfault's
// fault-injecting bucket with no rules: it must behave as its base, so
// the fault cases (fault_test.go) test Flow, not the wrapper.
func TestFaultyStorage(t *testing.T) {
	runConformance(t, backend{
		name:    "faulty",
		base:    func(t *testing.T) string { return newFaulty(t).URL("checkpoints") },
		bigSize: 12 << 20,
	})
}
