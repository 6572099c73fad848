package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/url"
	"path"
	"slices"

	"google.golang.org/protobuf/proto"

	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// FormatVersion is the newest `_metadata` format this build writes and
// reads. Versions ratchet one way: every older version stays readable.
const FormatVersion = 1

// Magic starts every `_metadata` file.
const Magic = "FLOWCKPT"

const headerSize = len(Magic) + 4 + 4 // magic, version, payload length
const trailerSize = 4                 // CRC32C

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Metadata errors; the returned *MetadataError wraps one of them.
var (
	// ErrCorrupt: the bytes are not a whole, intact `_metadata`, or
	// (*FileError, verify.go) a file it references is missing or not the
	// size it records.
	ErrCorrupt = errors.New("corrupt checkpoint metadata")
	// ErrNewerFormat: written by a newer Flow in a format this build cannot read.
	ErrNewerFormat = errors.New("checkpoint metadata format is newer than this Flow")
	// ErrIncomplete: a checkpoint directory has no `_metadata`.
	ErrIncomplete = errors.New("incomplete checkpoint")
)

// MetadataError describes a `_metadata` that cannot be used.
type MetadataError struct {
	Path   string // URL of the checkpoint or its _metadata, when known
	Reason string // what is wrong
	Kind   error  // ErrCorrupt, ErrNewerFormat or ErrIncomplete
}

func (e *MetadataError) Error() string {
	what := "checkpoint metadata"
	if e.Path != "" {
		what = "checkpoint " + e.Path
	}
	switch e.Kind {
	case ErrNewerFormat:
		return what + " was " + e.Reason
	case ErrIncomplete:
		return what + " is incomplete (" + e.Reason + "): pick a completed one (flowctl checkpoints JOB_ID)"
	default:
		return what + " is corrupt: " + e.Reason
	}
}

func (e *MetadataError) Unwrap() error { return e.Kind }

func corrupt(format string, args ...any) error {
	return &MetadataError{Reason: fmt.Sprintf(format, args...), Kind: ErrCorrupt}
}

// withPath names the checkpoint in a MetadataError.
func withPath(err error, p string) error {
	var me *MetadataError
	if errors.As(err, &me) && me.Path == "" {
		c := *me
		c.Path = p
		return &c
	}
	return err
}

// EncodeMetadata frames md as a `_metadata` file:
//
//	"FLOWCKPT" | version uint32 BE | length uint32 BE | protobuf | CRC32C uint32 BE
//
// where the CRC32C (Castagnoli) covers every byte before it. A zero
// md.FormatVersion is written as FormatVersion; md is not modified.
func EncodeMetadata(md *checkpointv1.CheckpointMetadata) ([]byte, error) {
	if md == nil {
		return nil, errors.New("encode checkpoint metadata: nil metadata")
	}
	if md.GetFormatVersion() > FormatVersion {
		return nil, fmt.Errorf("encode checkpoint metadata: format version %d is newer than this Flow's %d", md.GetFormatVersion(), FormatVersion)
	}
	if md.GetFormatVersion() == 0 {
		md = proto.Clone(md).(*checkpointv1.CheckpointMetadata)
		md.FormatVersion = FormatVersion
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint metadata %d: %w", md.GetCheckpointId(), err)
	}
	if uint64(len(payload)) > 1<<32-1 {
		return nil, fmt.Errorf("encode checkpoint metadata %d: %d bytes exceed the 4 GiB format limit", md.GetCheckpointId(), len(payload))
	}
	out := make([]byte, 0, headerSize+len(payload)+trailerSize)
	out = append(out, Magic...)
	out = binary.BigEndian.AppendUint32(out, md.GetFormatVersion())
	out = binary.BigEndian.AppendUint32(out, uint32(len(payload)))
	out = append(out, payload...)
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
	return out, nil
}

// DecodeMetadata parses a `_metadata` file. Errors are *MetadataError
// wrapping ErrCorrupt or ErrNewerFormat; it never panics.
func DecodeMetadata(b []byte) (*checkpointv1.CheckpointMetadata, error) {
	if len(b) < len(Magic) || !bytes.Equal(b[:len(Magic)], []byte(Magic)) {
		if len(b) < len(Magic) && bytes.HasPrefix([]byte(Magic), b) {
			return nil, corrupt("truncated: %d bytes, shorter than the header", len(b))
		}
		return nil, corrupt("not a Flow checkpoint metadata file (bad magic bytes)")
	}
	if len(b) < headerSize {
		return nil, corrupt("truncated: %d bytes, shorter than the header", len(b))
	}
	version := binary.BigEndian.Uint32(b[len(Magic):])
	if version == 0 {
		return nil, corrupt("format version 0 is invalid")
	}
	if version > FormatVersion {
		// A version field damaged in storage or in transit reads as a
		// newer format: a frame of this format's length whose checksum
		// fails is corrupt, not newer.
		n := uint64(binary.BigEndian.Uint32(b[len(Magic)+4:]))
		if end := uint64(headerSize) + n; uint64(len(b)) == end+trailerSize &&
			crc32.Checksum(b[:end], castagnoli) != binary.BigEndian.Uint32(b[end:]) {
			return nil, corrupt("checksum mismatch, and its version field reads %d, which this Flow (up to v%d) cannot read: if a newer Flow wrote it, upgrade Flow", version, FormatVersion)
		}
		return nil, &MetadataError{Kind: ErrNewerFormat,
			Reason: fmt.Sprintf("written by a newer Flow (format v%d); upgrade Flow (this one reads up to v%d)", version, FormatVersion)}
	}
	n := uint64(binary.BigEndian.Uint32(b[len(Magic)+4:]))
	want := uint64(headerSize) + n + trailerSize
	if uint64(len(b)) < want {
		return nil, corrupt("truncated: %d bytes, the header announces %d", len(b), want)
	}
	if uint64(len(b)) > want {
		return nil, corrupt("%d unexpected bytes after the checksum", uint64(len(b))-want)
	}
	end := headerSize + int(n)
	if got, sum := crc32.Checksum(b[:end], castagnoli), binary.BigEndian.Uint32(b[end:]); got != sum {
		return nil, corrupt("checksum mismatch (stored %08x, computed %08x)", sum, got)
	}
	md := &checkpointv1.CheckpointMetadata{}
	if err := proto.Unmarshal(b[headerSize:end], md); err != nil {
		return nil, corrupt("bad protobuf payload: %v", err)
	}
	if md.FormatVersion == 0 {
		md.FormatVersion = version
	}
	return md, nil
}

// WriteMetadata writes md as dir/_metadata. Call it after every other file
// of the checkpoint is written: the object appears atomically and its
// presence is what makes the checkpoint complete. It then reads the object
// back: a stored copy that differs from what was written (a server that
// reported a partial write complete) is deleted and reported as a
// *MetadataError wrapping ErrCorrupt.
//
// dir is relative to s; "" is s itself (a savepoint's own storage).
func (s *Storage) WriteMetadata(ctx context.Context, dir string, md *checkpointv1.CheckpointMetadata) error {
	b, err := EncodeMetadata(md)
	if err != nil {
		return fmt.Errorf("write %s: %w", s.URLOf(dir), err)
	}
	if err := s.WriteFile(ctx, metadataPath(dir), b); err != nil {
		return err
	}
	return s.readBack(ctx, metadataPath(dir), b) // verify.go
}

func metadataPath(dir string) string {
	if dir == "" {
		return MetadataFile
	}
	return dir + "/" + MetadataFile
}

// ReadMetadata reads and decodes dir/_metadata ("" is s itself). A missing `_metadata`
// gives a *MetadataError wrapping ErrIncomplete.
func (s *Storage) ReadMetadata(ctx context.Context, dir string) (*checkpointv1.CheckpointMetadata, error) {
	b, err := s.ReadFile(ctx, metadataPath(dir))
	if errors.Is(err, ErrNotFound) {
		return nil, &MetadataError{Path: s.URLOf(dir), Kind: ErrIncomplete, Reason: "no " + MetadataFile}
	}
	if err != nil {
		return nil, err
	}
	md, err := DecodeMetadata(b)
	if err != nil {
		return nil, withPath(err, s.URLOf(metadataPath(dir)))
	}
	return md, nil
}

// Snapshot is a completed checkpoint or savepoint opened for restore.
type Snapshot struct {
	Metadata *checkpointv1.CheckpointMetadata
	// Dir is the URL of the checkpoint or savepoint directory.
	Dir string
	// Files is the storage the FileHandle paths of Metadata are relative to:
	// the checkpoint storage directory (two levels above a checkpoint's
	// directory) or, for a savepoint, its own directory.
	Files *Storage
}

// Close releases the storage.
func (sn *Snapshot) Close() error { return sn.Files.Close() }

// OpenSnapshot opens the checkpoint or savepoint at rawURL: its directory
// or its `_metadata` file. A directory without `_metadata` is incomplete
// (ErrIncomplete); a missing directory is ErrNotFound.
func OpenSnapshot(ctx context.Context, rawURL string, opts ...Option) (*Snapshot, error) {
	st, name, err := openParent(ctx, rawURL, opts)
	if err != nil {
		return nil, err
	}
	u := *st.url
	parent := u.Path
	md, err := st.ReadMetadata(ctx, name)
	if errors.Is(err, ErrIncomplete) {
		if objs, lerr := st.List(ctx, name); lerr == nil && len(objs) == 0 {
			err = fmt.Errorf("checkpoint %s: %w (no such directory)", st.URLOf(name), ErrNotFound)
		}
	}
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	dirURL := st.URLOf(name)
	if md.GetSavepoint() {
		files, err := st.Sub(name)
		if err != nil {
			_ = st.Close()
			return nil, err
		}
		files.owner = st.owner // the savepoint's storage takes over st's bucket
		return &Snapshot{Metadata: md, Dir: dirURL, Files: files}, nil
	}
	_ = st.Close()
	id, ok := ParseCheckpointDirName(name)
	if !ok || id != md.GetCheckpointId() || path.Base(parent) != md.GetJobId() {
		return nil, &MetadataError{Path: dirURL, Kind: ErrCorrupt, Reason: fmt.Sprintf(
			"a checkpoint (job %s, id %d) must be at <storage>/%s; it was moved (copy savepoints instead, they are relocatable)",
			md.GetJobId(), md.GetCheckpointId(), CheckpointDir(md.GetJobId(), md.GetCheckpointId()))}
	}
	bu := u
	bu.Path = path.Dir(parent)
	files, err := Open(ctx, bu.String(), append(slices.Clip(opts), withoutCreate())...)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Metadata: md, Dir: dirURL, Files: files}, nil
}

// ReadMetadata reads the metadata of the checkpoint or savepoint at rawURL
// (its directory or its `_metadata` file).
func ReadMetadata(ctx context.Context, rawURL string, opts ...Option) (*checkpointv1.CheckpointMetadata, error) {
	sn, err := OpenSnapshot(ctx, rawURL, opts...)
	if err != nil {
		return nil, err
	}
	_ = sn.Close()
	return sn.Metadata, nil
}

// openParent opens the parent directory of the checkpoint or savepoint
// directory at rawURL (the directory or its `_metadata`), without creating
// anything, and returns it with the directory's name.
func openParent(ctx context.Context, rawURL string, opts []Option) (*Storage, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint URL %q does not parse (%v): %s: %w", rawURL, err, supportedSchemes, ErrBadURL)
	}
	clean := path.Clean("/" + u.Path)
	if path.Base(clean) == MetadataFile {
		clean = path.Dir(clean)
	}
	if clean == "/" {
		return nil, "", fmt.Errorf("checkpoint URL %q names no checkpoint or savepoint directory: %w", rawURL, ErrBadURL)
	}
	pu := *u
	pu.Path = path.Dir(clean)
	st, err := Open(ctx, pu.String(), append(slices.Clip(opts), withoutCreate())...)
	if err != nil {
		return nil, "", err
	}
	return st, path.Base(clean), nil
}
