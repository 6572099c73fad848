package jobmanager_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/jobmanager"
	"github.com/flowrt/flow/internal/runtime"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// scriptedSource acknowledges checkpoints up to failAt; on attempt 1, once
// checkpoint failAt completed, it calls breakStorage and fails. On later
// attempts, restoreFails(attempt, restoredID) may fail the restore.
type scriptedSource struct {
	failAt       int64
	breakStorage func(completed int64)
	restoreFails func(attempt int32, id int64) error

	mu       sync.Mutex
	restored map[int32]int64 // attempt -> restored checkpoint id
	broke    bool
}

func (s *scriptedSource) run(ctx context.Context, d *clusterv1.TaskDeployment, env runtime.TaskEnv) error {
	attempt := d.GetId().GetAttempt()
	if r := d.GetRestore(); r != nil {
		s.mu.Lock()
		s.restored[attempt] = r.GetCheckpointId()
		s.mu.Unlock()
		if s.restoreFails != nil {
			if err := s.restoreFails(attempt, r.GetCheckpointId()); err != nil {
				return err
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-env.Control:
			tr, ok := m.(runtime.TriggerCheckpoint)
			if !ok || attempt == 1 && tr.ID > s.failAt {
				continue // attempt 1 completes nothing after failAt
			}
			st := &checkpointv1.SubtaskState{Subtask: d.GetId().GetSubtask(), SourcePosition: []byte(fmt.Sprint(tr.ID)), StateSize: 10}
			if err := env.Checkpoints.Acknowledge(ctx, tr.ID, map[string]*checkpointv1.SubtaskState{"src-v1": st}, &clusterv1.TaskCheckpointTiming{}); err != nil {
				return err
			}
		case <-env.Notifications.Ready():
			for _, n := range env.Notifications.Take(nil) {
				if n.Completed {
					env.Notifications.MarkProcessed(n.ID)
				}
				if attempt == 1 && n.Completed && n.ID >= s.failAt && d.GetId().GetSubtask() == 0 {
					s.mu.Lock()
					if !s.broke {
						s.broke = true
						s.breakStorage(n.ID)
					}
					s.mu.Unlock()
					return fmt.Errorf("injected failure after checkpoint %d", n.ID)
				}
			}
		}
	}
}

func (s *scriptedSource) restoredIn(attempt int32) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restored[attempt]
}

func corruptFile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func checkpointsOf(t *testing.T, c *cluster, id string) *clusterv1.ListCheckpointsResponse {
	t.Helper()
	resp, err := c.client.ListCheckpoints(context.Background(), &clusterv1.ListCheckpointsRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func statusOf(resp *clusterv1.ListCheckpointsResponse, id int64) clusterv1.CheckpointStatus {
	for _, cp := range resp.GetCheckpoints() {
		if cp.GetId() == id {
			return cp.GetStatus()
		}
	}
	return clusterv1.CheckpointStatus_CHECKPOINT_STATUS_UNSPECIFIED
}

// A corrupt `_metadata` in the newest retained checkpoint: the restart
// restores the one before it, the broken one shows as CORRUPT and is no
// longer named latest.
func TestRecoveryFallsBackPastCorruptCheckpoint(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, jobmanager.Options{CheckpointStorage: "file://" + dir})
	var id string
	src := &scriptedSource{failAt: 4, restored: map[int32]int64{}}
	src.breakStorage = func(n int64) {
		corruptFile(t, filepath.Join(dir, id, fmt.Sprintf("chk-%d", n), "_metadata"))
	}
	c.addTaskManager("tm-a", 2, src.run)
	g := withRestart(chainGraph("fallback", 2, checkpointsEvery(30*time.Millisecond, 3)), fixedDelay(3, 10*time.Millisecond))
	id = c.submit(g)
	waitFor(t, func() bool { return src.restoredIn(2) != 0 })
	if got := src.restoredIn(2); got >= src.failAt || got < src.failAt-2 {
		t.Fatalf("attempt 2 restored checkpoint %d; want the newest intact one before the corrupt %d", got, src.failAt)
	}
	resp := checkpointsOf(t, c, id)
	if st := statusOf(resp, src.failAt); st != clusterv1.CheckpointStatus_CHECKPOINT_STATUS_CORRUPT {
		t.Fatalf("checkpoint %d is %v, want CORRUPT (history %v)", src.failAt, st, resp.GetCheckpoints())
	}
	if want := fmt.Sprintf("/chk-%d", src.restoredIn(2)); !strings.HasSuffix(resp.GetLatestCompletedPath(), want) {
		t.Fatalf("latest completed path %q, want one ending in %s", resp.GetLatestCompletedPath(), want)
	}
	// The broken checkpoint's files are kept for inspection.
	if _, err := os.Stat(filepath.Join(dir, id, fmt.Sprintf("chk-%d", src.failAt), "_metadata")); err != nil {
		t.Fatalf("the corrupt checkpoint's files were deleted: %v", err)
	}
	if _, err := c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	c.await(id)
}

// A subtask that cannot read the state it restores reports it: the next
// attempt falls back to an older checkpoint.
func TestRecoveryFallsBackWhenASubtaskCannotRead(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, jobmanager.Options{CheckpointStorage: "file://" + dir})
	src := &scriptedSource{failAt: 4, restored: map[int32]int64{}, breakStorage: func(int64) {}}
	var badID atomic.Int64 // both subtasks of attempt 2 set it, to the same id
	src.restoreFails = func(attempt int32, id int64) error {
		if attempt != 2 {
			return nil
		}
		badID.Store(id)
		return &runtime.RestoreError{CheckpointID: id, Where: dir, Err: fmt.Errorf("state file src-v1-0: %w", snapshot.ErrCorrupt)}
	}
	c.addTaskManager("tm-a", 2, src.run)
	g := withRestart(chainGraph("unreadable", 2, checkpointsEvery(30*time.Millisecond, 3)), fixedDelay(3, 10*time.Millisecond))
	id := c.submit(g)
	waitFor(t, func() bool { return src.restoredIn(3) != 0 })
	bad := badID.Load()
	if got := src.restoredIn(3); got >= bad {
		t.Fatalf("attempt 3 restored checkpoint %d; want one older than the unreadable %d", got, bad)
	}
	if st := statusOf(checkpointsOf(t, c, id), bad); st != clusterv1.CheckpointStatus_CHECKPOINT_STATUS_CORRUPT {
		t.Fatalf("checkpoint %d is %v, want CORRUPT", bad, st)
	}
	if _, err := c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	c.await(id)
}

// With every retained checkpoint broken, the job fails naming each one.
func TestRecoveryFailsWhenNoCheckpointIsReadable(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, jobmanager.Options{CheckpointStorage: "file://" + dir})
	var id string
	src := &scriptedSource{failAt: 3, restored: map[int32]int64{}}
	src.breakStorage = func(int64) {
		matches, _ := filepath.Glob(filepath.Join(dir, id, "chk-*", "_metadata"))
		for _, m := range matches {
			// Retention may be deleting the oldest one meanwhile: a
			// deleted checkpoint needs no corrupting. (This runs on the
			// task's goroutine: t.Error, not t.Fatal.)
			b, err := os.ReadFile(m)
			if err == nil {
				b[len(b)/2] ^= 0xff
				err = os.WriteFile(m, b, 0o644)
			}
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("corrupt %s: %v", m, err)
			}
		}
	}
	c.addTaskManager("tm-a", 2, src.run)
	g := withRestart(chainGraph("none-left", 2, checkpointsEvery(30*time.Millisecond, 2)), fixedDelay(3, 10*time.Millisecond))
	id = c.submit(g)
	last, _ := c.await(id)
	f := last.GetSummary().GetFailure()
	if last.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_FAILED || !strings.Contains(f, "no readable checkpoint is left") {
		t.Fatalf("status %v failure %q", last.GetSummary().GetStatus(), f)
	}
	for _, n := range []int{2, 3} {
		if !strings.Contains(f, fmt.Sprintf("checkpoint %d: ", n)) {
			t.Fatalf("failure %q does not name checkpoint %d", f, n)
		}
	}
	if got := src.restoredIn(2); got != 0 {
		t.Fatalf("attempt 2 was deployed restoring checkpoint %d", got)
	}
}
