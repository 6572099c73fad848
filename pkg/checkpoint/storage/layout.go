package storage

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
)

// Layout under the checkpoint storage directory (docs/formats/checkpoint.md):
//
//	<job-id>/chk-<n>/_metadata       written last: its presence means complete
//	<job-id>/chk-<n>/<files>         files owned by checkpoint n alone
//	<job-id>/shared/<files>          incremental files shared across checkpoints
//
// and under a savepoint directory:
//
//	savepoint-<jobid6>-<random>/_metadata, <files>   self-contained, relative paths
const (
	// MetadataFile is the name of the file that completes a checkpoint or
	// savepoint directory.
	MetadataFile = "_metadata"
	// SharedDirName is the job subdirectory of files shared across checkpoints.
	SharedDirName = "shared"

	checkpointDirPrefix = "chk-"
	savepointDirPrefix  = "savepoint-"
)

// CheckpointDir is the directory of checkpoint id of job jobID, relative to
// the storage directory: "<job-id>/chk-<id>".
func (s *Storage) CheckpointDir(jobID string, id int64) string { return CheckpointDir(jobID, id) }

// CheckpointDir is "<job-id>/chk-<id>".
func CheckpointDir(jobID string, id int64) string {
	return jobID + "/" + checkpointDirPrefix + strconv.FormatInt(id, 10)
}

// SharedDir is "<job-id>/shared", where incremental snapshots put the files
// later checkpoints may reuse. Name files there uniquely per upload (for
// example "<operator-uid>-<subtask>-<random>.sst"): the registry deletes a
// shared path when no retained checkpoint references it any more.
func SharedDir(jobID string) string { return jobID + "/" + SharedDirName }

// SharedPath is SharedDir(jobID) + "/" + name.
func SharedPath(jobID, name string) string { return SharedDir(jobID) + "/" + name }

// IsSharedPath reports whether rel is under a job's shared directory
// ("<job-id>/shared/...").
func IsSharedPath(rel string) bool {
	parts := strings.SplitN(rel, "/", 3)
	return len(parts) == 3 && parts[0] != "" && parts[1] == SharedDirName && parts[2] != ""
}

// ParseCheckpointDirName parses "chk-<n>" (n >= 0, no sign or leading zeros
// beyond "0").
func ParseCheckpointDirName(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, checkpointDirPrefix)
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') || digits[0] == '+' || digits[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// NewSavepointDirName returns a fresh savepoint directory name,
// "savepoint-<first 6 characters of jobID>-<12 random hex digits>".
func NewSavepointDirName(jobID string) string {
	short := jobID
	if len(short) > 6 {
		short = short[:6]
	}
	short = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, short)
	var b [6]byte
	_, _ = rand.Read(b[:]) // documented never to return an error since Go 1.24
	return savepointDirPrefix + short + "-" + hex.EncodeToString(b[:])
}
