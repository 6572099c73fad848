package jobmaster

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/flowrt/flow/internal/jobmanager/ha"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// CompletedStore keeps a job's checkpoints: where each one's files go,
// the `_metadata` that completes it (written last), and their deletion.
// Its methods taking a context do I/O: the job master calls them from its
// I/O goroutines only. The file-backed store (OpenFileStore) keeps
// everything in the checkpoint storage; an HA store (e.g. etcd) can keep
// the list of completed checkpoints apart while the files stay there.
type CompletedStore interface {
	// Target is where checkpoint id writes: the storage's base URL, the
	// checkpoint's directory relative to it and that directory's URL.
	Target(id int64) (base, dir, dirURL string)
	// Complete writes md, making its checkpoint complete, and returns its
	// restore point.
	Complete(ctx context.Context, md *checkpointv1.CheckpointMetadata) (*RestorePoint, error)
	// Abort deletes what an unfinished checkpoint wrote (the subtask
	// states of its acknowledgements, and its directory).
	Abort(ctx context.Context, id int64, states ...*checkpointv1.SubtaskState) error
	// DiscardLate deletes the files of late acknowledgements of a
	// completed checkpoint that it does not reference.
	DiscardLate(ctx context.Context, id int64, states ...*checkpointv1.SubtaskState) error
	// Discard deletes a completed checkpoint no longer retained.
	Discard(ctx context.Context, id int64) error
	// Verify reads p's metadata again and checks that every file it names
	// exists; it returns p with the metadata read.
	Verify(ctx context.Context, p *RestorePoint) (*RestorePoint, error)
	// List returns the completed checkpoints, oldest first.
	List(ctx context.Context) ([]*RestorePoint, error)
	// DeleteAll deletes every checkpoint of the job and returns how many
	// files went.
	DeleteAll(ctx context.Context) (int, error)
	// Close releases the storage.
	Close()
}

// StoreOpener opens the CompletedStore of job jobID whose checkpoint
// storage is url, and returns it with the completed checkpoints it holds,
// oldest first. OpenFileStore is the default; an HA implementation keeps
// the list of completed checkpoints in its consensus store (the files
// stay in the storage) and answers from that list.
type StoreOpener func(ctx context.Context, url, jobID string, log *slog.Logger) (CompletedStore, []*RestorePoint, error)

// HA are the job master's replaceable stores (package ha and
// CompletedStore); nil fields take the defaults: no checkpoint id counter
// (ids continue above the storage's newest checkpoint), OpenFileStore.
type HA struct {
	IDs    ha.CheckpointIDCounter
	Stores StoreOpener
}

func (h HA) open(ctx context.Context, url, jobID string, log *slog.Logger) (CompletedStore, []*RestorePoint, error) {
	if h.Stores != nil {
		return h.Stores(ctx, url, jobID, log)
	}
	return OpenFileStore(ctx, url, jobID, log)
}

// fileStore is the CompletedStore in checkpoint storage (file://, s3://,
// ...): a checkpoint is complete when its `_metadata` exists.
type fileStore struct {
	jobID string
	js    *storage.JobStore
}

var _ CompletedStore = (*fileStore)(nil)

// OpenFileStore opens the checkpoints of job jobID in the storage at url
// and returns them with the completed checkpoints found there.
func OpenFileStore(ctx context.Context, url, jobID string, log *slog.Logger) (CompletedStore, []*RestorePoint, error) {
	s, err := storage.Open(ctx, url, storage.WithLogger(log))
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint storage: %w", err)
	}
	js, completed, err := storage.OpenJob(ctx, s, jobID)
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("checkpoint storage %s: %w", url, err)
	}
	f := &fileStore{jobID: jobID, js: js}
	return f, f.points(completed), nil
}

func (f *fileStore) points(cs []storage.Completed) []*RestorePoint {
	return f.pointsIn(f.js.Storage(), cs)
}

func (f *fileStore) pointsIn(s *storage.Storage, cs []storage.Completed) []*RestorePoint {
	out := make([]*RestorePoint, 0, len(cs))
	for _, cp := range cs {
		out = append(out, &RestorePoint{id: cp.ID, own: true, storageBase: s.URL(), location: cp.Dir, dirURL: cp.URL, md: cp.Metadata})
	}
	return out
}

func (f *fileStore) Target(id int64) (string, string, string) {
	dir := f.js.Dir(id)
	return f.js.Storage().URL(), dir, f.js.Storage().URLOf(dir)
}

func (f *fileStore) Complete(ctx context.Context, md *checkpointv1.CheckpointMetadata) (*RestorePoint, error) {
	if err := f.js.Complete(ctx, md); err != nil {
		return nil, err
	}
	base, dir, url := f.Target(md.GetCheckpointId())
	return &RestorePoint{id: md.GetCheckpointId(), own: true, storageBase: base, location: dir, dirURL: url, md: md}, nil
}

func (f *fileStore) Abort(ctx context.Context, id int64, states ...*checkpointv1.SubtaskState) error {
	return f.js.Abort(ctx, id, states...)
}

func (f *fileStore) DiscardLate(ctx context.Context, id int64, states ...*checkpointv1.SubtaskState) error {
	return f.js.DiscardLate(ctx, id, states...)
}

func (f *fileStore) Discard(ctx context.Context, id int64) error { return f.js.Discard(ctx, id) }

func (f *fileStore) Verify(ctx context.Context, p *RestorePoint) (*RestorePoint, error) {
	md, err := f.js.Storage().ReadMetadata(ctx, p.location)
	if err == nil {
		err = storage.VerifyFiles(ctx, f.js.Storage(), md)
	}
	if err != nil {
		return nil, err
	}
	q := *p
	q.md = md
	return &q, nil
}

func (f *fileStore) List(ctx context.Context) ([]*RestorePoint, error) {
	all, err := storage.ListCompleted(ctx, f.js.Storage(), f.jobID)
	if err != nil {
		return nil, err
	}
	return f.points(all), nil
}

func (f *fileStore) DeleteAll(ctx context.Context) (int, error) {
	return f.js.Storage().DeleteDir(ctx, f.jobID)
}

func (f *fileStore) Close() { f.js.Storage().Close() }
