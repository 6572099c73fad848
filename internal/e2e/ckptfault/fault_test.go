// Package ckptfault runs checkpointed jobs on an in-process mini cluster
// (the real JobManager and TaskManagers) whose checkpoint storage is a
// fault-injecting store (internal/blobfault): failed and partial uploads
// must fail only their checkpoint, and the objects of a checkpoint are
// written in a fixed order, `_metadata` last.
package ckptfault

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gocloud.dev/blob"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/blobfault"
	"github.com/flowrt/flow/internal/minicluster"
	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/jobspec"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// spec is a small, unbounded keyed job: datagen -> count (keyBy key) ->
// blackhole, parallelism 1, heap state, checkpoints every 100ms, no
// restarts (a task failure would fail the job).
const spec = `
name: fault-job
parallelism: 1
operators:
  - id: src
    type: datagen
    uid: src-v1
    config: {keys: 20, rate: 2000}
  - id: count
    type: count
    uid: count-v1
    inputs: [src]
    keyBy: key
  - id: sink
    type: blackhole
    uid: sink-v1
    inputs: [count]
stateBackend: {type: heap}
checkpoints:
  interval: 100ms
  retain: 1
restart: {strategy: none}
`

type env struct {
	fs     *blobfault.Store
	jm     clusterv1.JobManagerServiceClient
	job    string
	ctx    context.Context
	cancel context.CancelFunc
}

// start registers a fault-injecting store, starts a mini cluster and
// submits the job with its checkpoints on the store; rules are added
// before the job starts.
func start(t *testing.T, rules ...blobfault.Rule) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	var b [6]byte
	_, _ = rand.Read(b[:])
	fs, err := blobfault.NewMem(fmt.Sprintf("e2e-%x", b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Close() })
	for _, r := range rules {
		fs.Inject(r)
	}
	c, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 1, Slots: 4, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	g, err := jobspec.Parse([]byte(spec), "fault-job.yaml", api.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The spec parser accepts only the documented schemes; the JobManager
	// and the tasks open whatever storage.Open opens.
	g.CheckpointConfig.Storage = fs.URL("checkpoints")
	conn, err := grpc.NewClient(c.JobManagerAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	jm := clusterv1.NewJobManagerServiceClient(conn)
	resp, err := jm.SubmitJob(ctx, &clusterv1.SubmitJobRequest{Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{fs: fs, jm: jm, job: resp.GetJobId(), ctx: ctx, cancel: cancel}
	t.Cleanup(func() { _, _ = jm.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: e.job}) })
	return e
}

// await polls the job's checkpoints until done holds, failing the test if
// the job leaves RUNNING (or CREATED) or a deadline passes.
func (e *env) await(t *testing.T, what string, done func([]*clusterv1.CheckpointInfo) bool) []*clusterv1.CheckpointInfo {
	t.Helper()
	for {
		j, err := e.jm.GetJob(e.ctx, &clusterv1.GetJobRequest{JobId: e.job})
		if err != nil {
			t.Fatal(err)
		}
		s := j.GetJob().GetSummary()
		switch s.GetStatus() {
		case clusterv1.JobStatus_JOB_STATUS_CREATED, clusterv1.JobStatus_JOB_STATUS_RUNNING:
		default:
			t.Fatalf("job %s while waiting for %s: %v", s.GetStatus(), what, j.GetJob())
		}
		if s.GetAttempt() != 1 {
			t.Fatalf("job restarted (attempt %d) while waiting for %s", s.GetAttempt(), what)
		}
		cs, err := e.jm.ListCheckpoints(e.ctx, &clusterv1.ListCheckpointsRequest{JobId: e.job})
		if err != nil {
			t.Fatal(err)
		}
		if done(cs.GetCheckpoints()) {
			return cs.GetCheckpoints()
		}
		select {
		case <-e.ctx.Done():
			t.Fatalf("timed out waiting for %s: checkpoints %v", what, cs.GetCheckpoints())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func byID(cs []*clusterv1.CheckpointInfo, id int64) *clusterv1.CheckpointInfo {
	for _, c := range cs {
		if c.GetId() == id {
			return c
		}
	}
	return nil
}

func completedAfter(cs []*clusterv1.CheckpointInfo, id int64) int {
	n := 0
	for _, c := range cs {
		st := c.GetStatus()
		if c.GetId() > id && (st == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED || st == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED) {
			n++
		}
	}
	return n
}

// A broken upload of checkpoint 2 (a state file that fails, a `_metadata`
// that fails, a state file a broken server truncates and reports stored):
// checkpoint 2 fails, the job keeps RUNNING in its first attempt, later
// checkpoints complete, and storage never holds checkpoint 2 as complete.
func TestJobManagerSurvivesBrokenCheckpointUploads(t *testing.T) {
	for _, c := range []struct {
		name    string
		rule    blobfault.Rule
		failure string // in CheckpointInfo.failure
	}{
		{"state file fails", blobfault.Rule{Op: blobfault.OpClose, Key: "**/chk-2/count-v1-*", Fault: blobfault.Fail(nil)}, "injected fault"},
		{"metadata fails", blobfault.Rule{Op: blobfault.OpClose, Key: "**/chk-2/_metadata", Fault: blobfault.Fail(nil)}, "injected fault"},
		{"state file truncated", blobfault.Rule{Op: blobfault.OpClose, Key: "**/chk-2/count-v1-*", Fault: blobfault.Truncate(-1), Times: 1}, "_metadata records"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := start(t, c.rule)
			cs := e.await(t, "two checkpoints after checkpoint 2", func(cs []*clusterv1.CheckpointInfo) bool {
				return completedAfter(cs, 2) >= 2
			})
			two := byID(cs, 2)
			if two == nil || two.GetStatus() != clusterv1.CheckpointStatus_CHECKPOINT_STATUS_FAILED {
				t.Fatalf("checkpoint 2: %v, want FAILED", two)
			}
			// What failed must reach `flowctl checkpoints`, as a decline's
			// reason does.
			if !strings.Contains(two.GetFailure(), c.failure) {
				t.Errorf("checkpoint 2 failed with %q: the failure does not say what broke (want %q in it)", two.GetFailure(), c.failure)
			}
			s, err := storage.Open(e.ctx, e.fs.URL("checkpoints"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			done, err := storage.ListCompleted(e.ctx, s, e.job)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range done {
				if d.ID == 2 {
					t.Fatal("storage holds checkpoint 2 as complete")
				}
				sn, err := storage.OpenSnapshot(e.ctx, d.URL)
				if err != nil {
					t.Fatal(err)
				}
				if err := storage.Verify(e.ctx, sn); err != nil {
					t.Errorf("completed checkpoint %d: %v", d.ID, err)
				}
				_ = sn.Close()
			}
		})
	}
}

// shortKey is a log key relative to the job's directory, job id replaced.
func shortKey(key, job string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "checkpoints/"+job+"/")
	return rest, ok
}

var update = flag.Bool("update", false, "rewrite testdata/write-order.golden")

// TestCheckpointWriteOrder records, with the store's op log, every
// operation on the objects of checkpoint 1 of the job, from the tasks'
// uploads to its discard by retention, and compares it with
// testdata/write-order.golden. The tasks' state files come first; tasks
// upload concurrently, so their files are rendered sorted, as "write K"
// for one create and one close. Then the JobManager checks the files
// (a listing), writes `_metadata` as one object (one create, one close:
// the object appears whole at close), strictly after every other object of
// the checkpoint, and reads it back. Discarding deletes `_metadata` first.
func TestCheckpointWriteOrder(t *testing.T) {
	e := start(t)
	e.await(t, "checkpoint 1 discarded", func(cs []*clusterv1.CheckpointInfo) bool {
		one := byID(cs, 1)
		return one != nil && one.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED
	})
	// The discard runs after the status changes: wait for its last delete.
	for {
		objs, _, err := e.fs.Base().ListPage(e.ctx, blob.FirstPageToken, 10, &blob.ListOptions{Prefix: "checkpoints/" + e.job + "/chk-1/"})
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) == 0 {
			break
		}
		select {
		case <-e.ctx.Done():
			t.Fatalf("checkpoint 1 was not deleted: %d objects left", len(objs))
		case <-time.After(10 * time.Millisecond):
		}
	}
	var log []blobfault.Entry
	for _, en := range e.fs.Log() {
		if k, ok := shortKey(en.Key, e.job); ok && strings.HasPrefix(k, "chk-1/") {
			en.Key = k
			log = append(log, en)
		}
	}
	raw := func() string {
		var b strings.Builder
		for _, en := range log {
			fmt.Fprintf(&b, "\n\t%s", en)
		}
		return b.String()
	}
	for _, en := range log {
		if en.Err != "" || en.Fault != "" {
			t.Fatalf("an operation failed: %s; log:%s", en, raw())
		}
	}
	// The state files: each one create then one close, all before _metadata.
	meta := slices.IndexFunc(log, func(en blobfault.Entry) bool { return en.Key == "chk-1/_metadata" })
	if meta < 0 {
		t.Fatalf("no _metadata written; log:%s", raw())
	}
	state := map[string][]blobfault.Op{}
	var got []string
	for _, en := range log[:meta] {
		if en.Op == blobfault.OpCreate || en.Op == blobfault.OpClose {
			state[en.Key] = append(state[en.Key], en.Op)
		}
	}
	for k, ops := range state {
		if !slices.Equal(ops, []blobfault.Op{blobfault.OpCreate, blobfault.OpClose}) {
			t.Fatalf("state file %s written as %v, want one create and one close; log:%s", k, ops, raw())
		}
		got = append(got, "write "+k)
	}
	slices.Sort(got)
	first := slices.IndexFunc(log, func(en blobfault.Entry) bool { return en.Op != blobfault.OpCreate && en.Op != blobfault.OpClose })
	if first < 0 || first > meta {
		t.Fatalf("the JobManager does not check the files before it writes _metadata; log:%s", raw())
	}
	rest := log[first:]
	for _, en := range rest {
		if _, ok := state[en.Key]; ok && (en.Op == blobfault.OpCreate || en.Op == blobfault.OpClose) {
			t.Fatalf("state file %s written after the JobManager began completing the checkpoint; log:%s", en.Key, raw())
		}
		got = append(got, en.Op.String()+" "+en.Key)
	}
	// _metadata: one create, then at once one close; nothing of the
	// checkpoint written after it.
	if log[meta].Op != blobfault.OpCreate || meta+1 >= len(log) || log[meta+1].Op != blobfault.OpClose || log[meta+1].Key != "chk-1/_metadata" {
		t.Fatalf("_metadata is not one create then one close; log:%s", raw())
	}
	for _, en := range log[meta+2:] {
		if en.Op == blobfault.OpCreate || en.Op == blobfault.OpClose {
			t.Fatalf("%s after _metadata was written; log:%s", en, raw())
		}
	}
	if del := slices.IndexFunc(log, func(en blobfault.Entry) bool { return en.Op == blobfault.OpDelete }); del < 0 || log[del].Key != "chk-1/_metadata" {
		t.Fatalf("the discard does not delete _metadata first; log:%s", raw())
	}

	golden := filepath.Join("testdata", "write-order.golden")
	text := strings.Join(got, "\n") + "\n"
	if *update {
		header := "# Checkpoint 1 of datagen -> count -> blackhole (heap state): every operation\n" +
			"# on its objects, written by TestCheckpointWriteOrder (go test -update).\n" +
			"# \"write K\": one create and one close of a task's state file (sorted).\n"
		if err := os.WriteFile(golden, []byte(header+text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(want), "\n") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if w := strings.Join(lines, "\n"); w != text {
		t.Fatalf("operations on checkpoint 1:\n%s\nwant (%s):\n%s", text, golden, w)
	}
}
