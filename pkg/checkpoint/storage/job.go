package storage

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"

	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// Completed is a completed checkpoint found in storage.
type Completed struct {
	ID       int64
	Dir      string // relative to the storage directory: "<job-id>/chk-<id>"
	URL      string // URL of the directory, for --from-checkpoint
	Metadata *checkpointv1.CheckpointMetadata
}

// ErrNoCheckpoint: a job has no completed checkpoint in storage.
var ErrNoCheckpoint = errors.New("no completed checkpoint")

// ListCompleted scans "<job-id>/chk-*/_metadata" and returns the completed
// checkpoints of jobID in increasing id order. Directories without a valid
// `_metadata` (incomplete, corrupt, from a newer Flow, or not matching
// their directory name) are skipped, each with a logged reason; a
// `_metadata` that does not decode is read a second time first (a corrupt
// read is not a corrupt file).
func ListCompleted(ctx context.Context, s *Storage, jobID string) ([]Completed, error) {
	if err := validJobID(jobID); err != nil {
		return nil, err
	}
	names, err := s.listDirs(ctx, jobID)
	if err != nil {
		return nil, err
	}
	var out []Completed
	for _, name := range names {
		id, ok := ParseCheckpointDirName(name)
		if !ok {
			continue
		}
		dir := path.Join(jobID, name)
		md, err := readCompleted(ctx, s, jobID, id, dir)
		if errors.Is(err, ErrCorrupt) {
			// A corrupt read is not a corrupt file: skipping a completed
			// checkpoint would also drop its references from a rebuilt
			// shared-file registry.
			md, err = readCompleted(ctx, s, jobID, id, dir)
		}
		if err != nil {
			var me *MetadataError
			if !errors.As(err, &me) {
				return nil, err // storage failure: do not pretend the checkpoint is absent
			}
			s.opts.logger.Warn("skipping checkpoint", "job", jobID, "checkpoint", id, "reason", err.Error())
			continue
		}
		out = append(out, Completed{ID: id, Dir: dir, URL: s.URLOf(dir), Metadata: md})
	}
	slices.SortFunc(out, func(a, b Completed) int { return compareInt64(a.ID, b.ID) })
	return out, nil
}

// readCompleted reads the `_metadata` of checkpoint directory dir (id of
// jobID) and checks that it is that checkpoint's.
func readCompleted(ctx context.Context, s *Storage, jobID string, id int64, dir string) (*checkpointv1.CheckpointMetadata, error) {
	md, err := s.ReadMetadata(ctx, dir)
	if err == nil && (md.GetCheckpointId() != id || md.GetJobId() != jobID || md.GetSavepoint()) {
		err = &MetadataError{Path: s.URLOf(dir), Kind: ErrCorrupt, Reason: fmt.Sprintf(
			"its _metadata is of job %q checkpoint %d (savepoint %t)", md.GetJobId(), md.GetCheckpointId(), md.GetSavepoint())}
	}
	return md, err
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// LatestCompleted returns the id and directory URL of jobID's newest
// completed checkpoint, for recovery and --from-checkpoint; ErrNoCheckpoint
// if there is none.
func LatestCompleted(ctx context.Context, s *Storage, jobID string) (int64, string, error) {
	all, err := ListCompleted(ctx, s, jobID)
	if err != nil {
		return 0, "", err
	}
	if len(all) == 0 {
		return 0, "", fmt.Errorf("job %s has no completed checkpoint under %s: %w", jobID, s.URL(), ErrNoCheckpoint)
	}
	last := all[len(all)-1]
	return last.ID, last.URL, nil
}

// RebuildRegistry builds the shared-file registry of jobID from the
// completed checkpoints in storage (after a JobManager restart).
func RebuildRegistry(ctx context.Context, s *Storage, jobID string) (*Registry, error) {
	all, err := ListCompleted(ctx, s, jobID)
	if err != nil {
		return nil, err
	}
	return registryOf(all)
}

func registryOf(all []Completed) (*Registry, error) {
	r := NewRegistry()
	for _, c := range all {
		if err := r.Register(c.ID, c.Metadata); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func validJobID(jobID string) error {
	if jobID == "" || jobID == "." || jobID == ".." || path.Base(jobID) != jobID || jobID == SharedDirName {
		return fmt.Errorf("job id %q cannot name a storage directory: %w", jobID, ErrBadPath)
	}
	return nil
}

// JobStore is the checkpoint storage of one job as the JobManager's
// checkpoint driver uses it: it writes `_metadata` on ActionFinalize,
// registers shared files, and deletes checkpoints on ActionDiscard and
// ActionAbort. Safe for concurrent use; calls for the same checkpoint id
// must not overlap.
type JobStore struct {
	s     *Storage
	jobID string
	reg   *Registry
}

// OpenJob opens jobID's checkpoints in s and rebuilds the shared-file
// registry from the completed ones, which it returns in increasing id order
// (the retained checkpoints to resume the coordinator with).
func OpenJob(ctx context.Context, s *Storage, jobID string) (*JobStore, []Completed, error) {
	all, err := ListCompleted(ctx, s, jobID)
	if err != nil {
		return nil, nil, err
	}
	reg, err := registryOf(all)
	if err != nil {
		return nil, nil, err
	}
	return &JobStore{s: s, jobID: jobID, reg: reg}, all, nil
}

// Storage is the storage the job's checkpoints are in.
func (j *JobStore) Storage() *Storage { return j.s }

// Registry is the job's shared-file registry.
func (j *JobStore) Registry() *Registry { return j.reg }

// Dir is the directory of checkpoint id, relative to the storage.
func (j *JobStore) Dir(id int64) string { return CheckpointDir(j.jobID, id) }

// Complete finalizes checkpoint md.CheckpointId: it checks that every file
// md references is stored with its recorded size (VerifyFiles; a
// *FileError wrapping ErrCorrupt otherwise, and nothing is written), writes
// its `_metadata` (call it after the tasks uploaded every file) and
// registers its shared files. md must be of this job and not a savepoint.
func (j *JobStore) Complete(ctx context.Context, md *checkpointv1.CheckpointMetadata) error {
	if md.GetJobId() != j.jobID || md.GetSavepoint() {
		return fmt.Errorf("complete checkpoint %d: metadata of job %q (savepoint %t) given to the checkpoints of job %q",
			md.GetCheckpointId(), md.GetJobId(), md.GetSavepoint(), j.jobID)
	}
	if slices.Contains(j.reg.Checkpoints(), md.GetCheckpointId()) {
		return fmt.Errorf("complete checkpoint %d of job %s: it is already complete", md.GetCheckpointId(), j.jobID)
	}
	// Every file the tasks acknowledged must be there, whole, before
	// `_metadata` makes the checkpoint complete (a server may report an
	// upload complete that is not).
	if err := VerifyFiles(ctx, j.s, md); err != nil {
		return fmt.Errorf("complete checkpoint %d of job %s: %w", md.GetCheckpointId(), j.jobID, err)
	}
	if err := j.s.WriteMetadata(ctx, j.Dir(md.GetCheckpointId()), md); err != nil {
		return err
	}
	return j.reg.Register(md.GetCheckpointId(), md)
}

// Discard deletes completed checkpoint id, which fell out of retention: its
// `_metadata` first (so it is no longer complete), then its own files, then
// the shared files no retained checkpoint references any more.
func (j *JobStore) Discard(ctx context.Context, id int64) error {
	dir := j.Dir(id)
	if err := j.s.Delete(ctx, path.Join(dir, MetadataFile)); err != nil {
		return fmt.Errorf("discard checkpoint %d: %w", id, err)
	}
	shared := j.reg.Release(id)
	var errs []error
	if _, err := j.s.DeleteDir(ctx, dir); err != nil {
		errs = append(errs, err)
	}
	for _, p := range shared {
		if err := j.s.Delete(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("discard checkpoint %d: %w", id, err)
	}
	return nil
}

// Abort deletes the state of checkpoint id that did not complete (or of a
// late acknowledgement): its directory, and the shared files among the
// given subtask states that no registered checkpoint references. It refuses
// a registered (completed) checkpoint: use Discard.
func (j *JobStore) Abort(ctx context.Context, id int64, subtasks ...*checkpointv1.SubtaskState) error {
	if slices.Contains(j.reg.Checkpoints(), id) {
		return fmt.Errorf("abort checkpoint %d: it completed; discard it instead", id)
	}
	var errs []error
	if _, err := j.s.DeleteDir(ctx, j.Dir(id), MetadataFile); err != nil {
		errs = append(errs, err)
	}
	for _, st := range subtasks {
		for _, f := range SubtaskFiles(st) {
			if !f.GetShared() || j.reg.Refs(f.GetPath()) > 0 {
				continue
			}
			if err := j.s.Delete(ctx, f.GetPath()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("abort checkpoint %d: %w", id, err)
	}
	return nil
}

// DiscardLate deletes the state of an acknowledgement of checkpoint id that
// came after the checkpoint ended (ActionDiscardLate): the files of the
// given subtask states that neither checkpoint id (if it completed) nor,
// for shared files, any registered checkpoint references.
func (j *JobStore) DiscardLate(ctx context.Context, id int64, subtasks ...*checkpointv1.SubtaskState) error {
	keep := map[string]bool{}
	if slices.Contains(j.reg.Checkpoints(), id) {
		md, err := j.s.ReadMetadata(ctx, j.Dir(id))
		if err != nil {
			return fmt.Errorf("discard a late acknowledgement of checkpoint %d: %w", id, err)
		}
		for _, f := range Files(md) {
			keep[f.GetPath()] = true
		}
	}
	var errs []error
	for _, st := range subtasks {
		for _, f := range SubtaskFiles(st) {
			if keep[f.GetPath()] || (f.GetShared() && j.reg.Refs(f.GetPath()) > 0) {
				continue
			}
			if err := j.s.Delete(ctx, f.GetPath()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("discard a late acknowledgement of checkpoint %d: %w", id, err)
	}
	return nil
}

// LatestCompleted is LatestCompleted for this job.
func (j *JobStore) LatestCompleted(ctx context.Context) (int64, string, error) {
	return LatestCompleted(ctx, j.s, j.jobID)
}

// DisposeSavepoint deletes the savepoint at rawURL (its directory or its
// `_metadata`): exactly the objects under its directory, `_metadata`
// first. It refuses a checkpoint directory and an incomplete one.
func DisposeSavepoint(ctx context.Context, rawURL string, opts ...Option) error {
	parent, name, err := openParent(ctx, rawURL, opts)
	if err != nil {
		return err
	}
	defer parent.Close()
	md, err := parent.ReadMetadata(ctx, name)
	if err != nil {
		return fmt.Errorf("dispose savepoint: %w", err)
	}
	if !md.GetSavepoint() {
		return fmt.Errorf("dispose savepoint %s: it is checkpoint %d of job %s, not a savepoint; checkpoints are deleted by retention",
			parent.URLOf(name), md.GetCheckpointId(), md.GetJobId())
	}
	if _, err := parent.DeleteDir(ctx, name, MetadataFile); err != nil {
		return fmt.Errorf("dispose savepoint: %w", err)
	}
	return nil
}
