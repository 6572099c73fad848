package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"

	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// FileError: a file that a checkpoint's or savepoint's `_metadata`
// references is missing, or is not the size the metadata records (an
// upload that a broken server reported complete, a file deleted or
// replaced behind Flow's back). It wraps ErrCorrupt, and ErrNotFound when
// the file is missing.
type FileError struct {
	// Snapshot is the URL of the checkpoint or savepoint directory.
	Snapshot string
	// File is the FileHandle path, relative to the storage the handles
	// are relative to; FileURL its URL.
	File, FileURL string
	// Size is the size the metadata records; Actual the stored size (-1
	// when the file is missing).
	Size, Actual int64
}

func (e *FileError) Error() string {
	what := "its file " + e.FileURL
	if e.Actual < 0 {
		return "checkpoint " + e.Snapshot + " is corrupt: " + what + " is missing"
	}
	return fmt.Sprintf("checkpoint %s is corrupt: %s is %d bytes, its _metadata records %d (an upload that did not complete?)",
		e.Snapshot, what, e.Actual, e.Size)
}

func (e *FileError) Unwrap() []error {
	if e.Actual < 0 {
		return []error{ErrCorrupt, ErrNotFound}
	}
	return []error{ErrCorrupt}
}

// Verify checks that every file the snapshot's `_metadata` references is
// present in sn.Files with the size the metadata records. It returns nil,
// a *FileError (wrapping ErrCorrupt) naming the first bad file in metadata
// order, or a storage error. Call it before restoring: a checkpoint whose
// files were lost or damaged after it completed fails here, by name,
// instead of half-way through a restore.
//
// It lists the directories of the files (one listing per directory, not
// one request per file) and reads no file: a file of the right size whose
// bytes changed is caught by the checksums of the state formats when it is
// read (docs/formats/state-snapshot.md).
func Verify(ctx context.Context, sn *Snapshot) error {
	return verifyFiles(ctx, sn.Files, sn.Dir, sn.Metadata)
}

// VerifyFiles is Verify for metadata md whose file paths are relative to
// s: a checkpoint storage directory, or a savepoint's own directory. Call
// it before writing the `_metadata` of md (JobStore.Complete does).
func VerifyFiles(ctx context.Context, s *Storage, md *checkpointv1.CheckpointMetadata) error {
	dir := s.URL()
	if !md.GetSavepoint() {
		dir = s.URLOf(CheckpointDir(md.GetJobId(), md.GetCheckpointId()))
	}
	return verifyFiles(ctx, s, dir, md)
}

func verifyFiles(ctx context.Context, s *Storage, snapshotURL string, md *checkpointv1.CheckpointMetadata) error {
	files := Files(md)
	sizes := map[string]int64{} // listed path -> size
	listed := map[string]bool{} // directories listed
	for _, f := range files {
		p := f.GetPath()
		bad := &FileError{Snapshot: snapshotURL, File: p, FileURL: s.URLOf(p), Size: f.GetSize(), Actual: -1}
		if _, err := s.key(p); err != nil {
			return fmt.Errorf("checkpoint %s is corrupt: its file %q is not a path inside %s: %w", snapshotURL, p, s.URL(), errors.Join(ErrCorrupt, err))
		}
		dir := path.Dir(p)
		if dir == "." {
			dir = ""
		}
		if !listed[dir] {
			objs, err := s.List(ctx, dir)
			if err != nil {
				return fmt.Errorf("verify checkpoint %s: %w", snapshotURL, err)
			}
			for _, o := range objs {
				sizes[o.Path] = o.Size
			}
			listed[dir] = true
		}
		size, ok := sizes[p]
		if !ok {
			return bad
		}
		if size != f.GetSize() {
			bad.Actual = size
			return bad
		}
	}
	return nil
}

// readBack checks that the object rel holds exactly want; a different
// stored copy is deleted, so that it never passes for a whole file.
func (s *Storage) readBack(ctx context.Context, rel string, want []byte) error {
	got, err := s.ReadFile(ctx, rel)
	if err != nil {
		return fmt.Errorf("read back what was written: %w", err)
	}
	if bytes.Equal(got, want) {
		return nil
	}
	reason := fmt.Sprintf("the stored copy (%d bytes) is not what was written (%d bytes): deleted it", len(got), len(want))
	if err := s.Delete(ctx, rel); err != nil {
		reason = fmt.Sprintf("the stored copy (%d bytes) is not what was written (%d bytes), and deleting it failed: %v", len(got), len(want), err)
	}
	return &MetadataError{Path: s.URLOf(rel), Kind: ErrCorrupt, Reason: reason}
}
