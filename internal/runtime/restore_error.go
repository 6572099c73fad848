package runtime

import (
	"errors"
	"fmt"
	"io"

	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/statebackend"
)

// RestoreError is a subtask's failure to restore the checkpoint or
// savepoint it was deployed with.
type RestoreError struct {
	// CheckpointID is the id of the checkpoint or savepoint.
	CheckpointID int64
	// Where is its storage location, for messages.
	Where string
	Err   error
}

func (e *RestoreError) Error() string {
	return fmt.Sprintf("restore from checkpoint %d (%s): %v", e.CheckpointID, e.Where, e.Err)
}

func (e *RestoreError) Unwrap() error { return e.Err }

// unreadable are the causes that make a snapshot unusable however the job
// is deployed: a file that is missing, truncated or fails its checksum.
var unreadable = []error{
	storage.ErrNotFound, storage.ErrCorrupt, storage.ErrIncomplete,
	snapshot.ErrCorrupt, statebackend.ErrCorrupt, io.ErrUnexpectedEOF,
}

// Unreadable reports whether the restore failed because the snapshot's
// files cannot be read (missing or corrupt), rather than because the job
// does not fit the snapshot. Only then can an older checkpoint help.
func (e *RestoreError) Unreadable() bool {
	for _, target := range unreadable {
		if errors.Is(e.Err, target) {
			return true
		}
	}
	return false
}

// UnreadableCheckpoint reports the checkpoint whose files a task failure
// could not read (see RestoreError.Unreadable).
func UnreadableCheckpoint(err error) (int64, bool) {
	var re *RestoreError
	if errors.As(err, &re) && re.Unreadable() {
		return re.CheckpointID, true
	}
	return 0, false
}
