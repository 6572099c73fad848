package jobmanager_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/jobmanager"
	"github.com/flowrt/flow/internal/jobmanager/jobmaster"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// pointerStore is a completed-checkpoint store in the form an HA
// implementation takes: the list of completed checkpoints lives apart
// from the storage (here in memory, standing for etcd), the files stay in
// the storage. Only what the list holds counts as completed.
type pointerStore struct {
	mu    sync.Mutex
	ids   map[int64]bool
	opens int
}

func (p *pointerStore) open(ctx context.Context, url, jobID string, log *slog.Logger) (jobmaster.CompletedStore, []*jobmaster.RestorePoint, error) {
	inner, found, err := jobmaster.OpenFileStore(ctx, url, jobID, log)
	if err != nil {
		return nil, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.opens++
	var listed []*jobmaster.RestorePoint
	for _, pt := range found {
		if p.ids[int64(pt.ID())] {
			listed = append(listed, pt)
		}
	}
	return &pointed{CompletedStore: inner, p: p}, listed, nil
}

func (p *pointerStore) known() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int64
	for id := range p.ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

type pointed struct {
	jobmaster.CompletedStore
	p *pointerStore
}

func (s *pointed) Complete(ctx context.Context, md *checkpointv1.CheckpointMetadata) (*jobmaster.RestorePoint, error) {
	rp, err := s.CompletedStore.Complete(ctx, md)
	if err == nil {
		s.p.mu.Lock()
		s.p.ids[md.GetCheckpointId()] = true
		s.p.mu.Unlock()
	}
	return rp, err
}

func (s *pointed) Discard(ctx context.Context, id int64) error {
	s.p.mu.Lock()
	delete(s.p.ids, id)
	s.p.mu.Unlock()
	return s.CompletedStore.Discard(ctx, id)
}

// The completed-checkpoint store is a seam (Options.CompletedCheckpoints):
// the job masters complete and discard checkpoints through it, and a
// restarted JobManager takes the checkpoint history from its answer, not
// from listing the storage: a checkpoint whose files are in storage but
// which the store does not list is not offered.
func TestCompletedCheckpointStoreIsReplaceable(t *testing.T) {
	dataDir, ckDir := t.TempDir(), t.TempDir()
	ps := &pointerStore{ids: map[int64]bool{}}
	opts := jobmanager.Options{DataDir: dataDir, CheckpointStorage: "file://" + ckDir, CompletedCheckpoints: ps.open}
	c := newCluster(t, opts)
	src := &ackingSource{restored: map[int32]*clusterv1.TaskRestore{}, notified: map[int64]bool{}}
	c.addTaskManager("tm-a", 2, src.run)
	id := c.submit(chainGraph("ck", 2, checkpointsEvery(50*time.Millisecond, 2)))
	waitFor(t, func() bool { return len(ps.known()) == 2 && ps.known()[0] >= 2 })
	c.jm.Close()

	all, err := storage.ListCompleted(context.Background(), openStorage(t, "file://"+ckDir), id)
	if err != nil {
		t.Fatal(err)
	}
	known := ps.known()
	var inStorage []int64
	for _, cp := range all {
		inStorage = append(inStorage, cp.ID)
	}
	if !slices.Equal(inStorage, known) {
		t.Fatalf("storage holds checkpoints %v, the store lists %v: retention did not go through the store", inStorage, known)
	}
	// The store forgets the newest one (its files stay in storage).
	ps.mu.Lock()
	delete(ps.ids, known[1])
	opensBefore := ps.opens
	ps.mu.Unlock()

	jm, err := jobmanager.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer jm.Close()
	var resp *clusterv1.ListCheckpointsResponse
	waitFor(t, func() bool {
		resp, err = jm.ListCheckpoints(context.Background(), &clusterv1.ListCheckpointsRequest{JobId: id})
		return err == nil && len(resp.GetCheckpoints()) > 0
	})
	if n := len(resp.GetCheckpoints()); n != 1 || resp.GetCheckpoints()[0].GetId() != known[0] {
		t.Fatalf("history after the restart: %v, want only checkpoint %d (the store's)", resp.GetCheckpoints(), known[0])
	}
	ps.mu.Lock()
	opened := ps.opens - opensBefore
	ps.mu.Unlock()
	if opened == 0 {
		t.Fatal("the restarted JobManager did not open the job's store")
	}
}
