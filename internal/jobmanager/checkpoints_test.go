package jobmanager_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flowrt/flow/internal/jobmanager"
	"github.com/flowrt/flow/internal/runtime"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// checkpointsEvery is a checkpoint config triggering every interval that
// keeps retain completed checkpoints (the defaults for the rest).
func checkpointsEvery(interval time.Duration, retain int32) *jobgraphv1.CheckpointConfig {
	return &jobgraphv1.CheckpointConfig{Interval: durationpb.New(interval), Retain: proto.Int32(retain)}
}

// chainGraph is one task vertex: a source chained to a sink.
func chainGraph(name string, p int32, checkpoints *jobgraphv1.CheckpointConfig) *jobgraphv1.JobGraph {
	g := &jobgraphv1.JobGraph{
		Name: name, Parallelism: p, MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{
			{Id: "src", Uid: "src-v1", Type: "datagen", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SOURCE},
			{Id: "sink", Type: "blackhole", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SINK},
		},
		Edges:            []*jobgraphv1.Edge{{Source: "src", Target: "sink", Partitioning: jobgraphv1.Partitioning_PARTITIONING_FORWARD}},
		CheckpointConfig: checkpoints,
	}
	return g
}

// ackingSource is a task body that acknowledges every checkpoint it is
// asked to take with its "position" (how many triggers it saw, after what
// it restored), and records what it was restored from.
type ackingSource struct {
	mu       sync.Mutex
	restored map[int32]*clusterv1.TaskRestore // by attempt
	failAt   int64                            // fail attempt 1 after acking this checkpoint id
	notified map[int64]bool
}

func (a *ackingSource) run(ctx context.Context, d *clusterv1.TaskDeployment, env runtime.TaskEnv) error {
	a.mu.Lock()
	if d.GetRestore() != nil {
		a.restored[d.GetId().GetAttempt()] = d.GetRestore()
	}
	a.mu.Unlock()
	var failAfter int64 // fail once a checkpoint at or after it completed
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-env.Control:
			switch m := m.(type) {
			case runtime.TriggerCheckpoint:
				st := &checkpointv1.SubtaskState{Subtask: d.GetId().GetSubtask(), SourcePosition: []byte(fmt.Sprint(m.ID)), StateSize: 10, UploadedSize: 10}
				err := env.Checkpoints.Acknowledge(ctx, m.ID, map[string]*checkpointv1.SubtaskState{"src-v1": st},
					&clusterv1.TaskCheckpointTiming{SyncMs: 1, AsyncMs: 2, StateSize: 10})
				if err != nil {
					return err
				}
				if a.failAt > 0 && m.ID >= a.failAt && d.GetId().GetAttempt() == 1 && failAfter == 0 {
					failAfter = m.ID
				}
			}
		case <-env.Notifications.Ready():
			for _, m := range env.Notifications.Take(nil) {
				a.mu.Lock()
				a.notified[m.ID] = m.Completed
				a.mu.Unlock()
				if m.Completed {
					env.Notifications.MarkProcessed(m.ID)
				}
				if m.Completed && failAfter > 0 && m.ID >= failAfter {
					return fmt.Errorf("injected failure after checkpoint %d", m.ID)
				}
			}
		}
	}
}

func TestCheckpointsCompleteAndRestoreAfterFailure(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, jobmanager.Options{CheckpointStorage: "file://" + dir})
	src := &ackingSource{restored: map[int32]*clusterv1.TaskRestore{}, failAt: 3, notified: map[int64]bool{}}
	c.addTaskManager("tm-a", 2, src.run)
	c.addTaskManager("tm-b", 2, src.run)
	g := withRestart(chainGraph("ck", 2, checkpointsEvery(50*time.Millisecond, 2)), fixedDelay(3, 50*time.Millisecond))
	id := c.submit(g)

	// Attempt 1 fails after checkpoint 3; attempt 2 must restore from the
	// latest completed one.
	var restore *clusterv1.TaskRestore
	waitFor(t, func() bool { // fails the test if attempt 2 has no restore section
		src.mu.Lock()
		defer src.mu.Unlock()
		restore = src.restored[2]
		return restore != nil
	})
	if restore.GetCheckpointId() < 3 {
		t.Fatalf("restored from checkpoint %d, want >= 3", restore.GetCheckpointId())
	}
	states := restore.GetOperators()["src-v1"].GetStates()
	if len(states) != 1 || string(states[0].GetSourcePosition()) == "" {
		t.Fatalf("restore of src-v1: %v", states)
	}
	// The checkpoint directory is complete on disk with its _metadata.
	md, err := storage.ReadMetadata(context.Background(), "file://"+dir+"/"+id+fmt.Sprintf("/chk-%d", restore.GetCheckpointId()))
	if err != nil {
		t.Fatal(err)
	}
	if md.GetJobId() != id || len(md.GetOperators()) != 2 || md.GetOperators()[0].GetUid() != "src-v1" || len(md.GetOperators()[0].GetSubtasks()) != 2 {
		t.Fatalf("metadata: %v", md)
	}

	// History via the API: completed checkpoints with sizes and timings.
	resp, err := c.client.ListCheckpoints(context.Background(), &clusterv1.ListCheckpointsRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	completed := 0
	for _, cp := range resp.GetCheckpoints() {
		if cp.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED {
			completed++
			if cp.GetStateSize() != 20 || len(cp.GetTasks()) != 2 {
				t.Fatalf("checkpoint %d: size %d, %d task timings", cp.GetId(), cp.GetStateSize(), len(cp.GetTasks()))
			}
		}
	}
	if completed == 0 || !strings.HasPrefix(resp.GetLatestCompletedPath(), "file://") {
		t.Fatalf("history %v", resp)
	}
	src.mu.Lock()
	notified := len(src.notified)
	src.mu.Unlock()
	if notified == 0 {
		t.Fatal("no checkpoint completion was notified to the tasks")
	}
	// Retention keeps 2 completed checkpoints on disk.
	waitFor(t, func() bool {
		all, err := storage.ListCompleted(context.Background(), openStorage(t, "file://"+dir), id)
		return err == nil && len(all) <= 2 && len(all) > 0
	})
	if _, err := c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	c.await(id)
}

func TestCheckpointFailuresFailTheJob(t *testing.T) {
	c := newCluster(t, jobmanager.Options{CheckpointStorage: "file://" + t.TempDir()})
	// Sources that decline every checkpoint.
	c.addTaskManager("tm-a", 2, func(ctx context.Context, d *clusterv1.TaskDeployment, env runtime.TaskEnv) error {
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case m := <-env.Control:
				if tr, ok := m.(runtime.TriggerCheckpoint); ok {
					_ = env.Checkpoints.Decline(ctx, tr.ID, "disk full")
				}
			}
		}
	})
	id := c.submit(chainGraph("declines", 1, &jobgraphv1.CheckpointConfig{Interval: durationpb.New(20 * time.Millisecond), TolerableFailures: proto.Int32(2)}))
	last, _ := c.await(id)
	f := last.GetSummary().GetFailure()
	if last.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_FAILED || !strings.Contains(f, "3 consecutive checkpoints failed (tolerableFailures is 2)") {
		t.Fatalf("status %v failure %q", last.GetSummary().GetStatus(), f)
	}
	resp, _ := c.client.ListCheckpoints(context.Background(), &clusterv1.ListCheckpointsRequest{JobId: id})
	if len(resp.GetCheckpoints()) < 3 || !strings.Contains(resp.GetCheckpoints()[0].GetFailure(), "disk full") {
		t.Fatalf("history should show the declines with their reason: %v", resp.GetCheckpoints())
	}
}

func TestSubmitFromMissingCheckpoint(t *testing.T) {
	c := newCluster(t, jobmanager.Options{})
	u := url.URL{Scheme: "file", Path: t.TempDir() + "/nope/chk-1"}
	_, err := c.client.SubmitJob(context.Background(), &clusterv1.SubmitJobRequest{Graph: chainGraph("x", 1, nil), RestorePath: u.String()})
	if err == nil || !strings.Contains(err.Error(), "chk-1") {
		t.Fatalf("submit from a missing checkpoint: %v", err)
	}
}

func openStorage(t *testing.T, u string) *storage.Storage {
	s, err := storage.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds, failing the test after 15s: for
// state that has no watch (task bodies, TaskManager lists).
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		<-tick.C
	}
}

func TestSavepointTriggerAndStop(t *testing.T) {
	c := newCluster(t, jobmanager.Options{})
	src := &ackingSource{restored: map[int32]*clusterv1.TaskRestore{}, notified: map[int64]bool{}}
	c.addTaskManager("tm-a", 2, src.run)
	// No periodic checkpoints: savepoints work anyway.
	id := c.submit(chainGraph("sp", 2, nil))
	waitStatus(t, c, id, clusterv1.JobStatus_JOB_STATUS_RUNNING)
	// The job is RUNNING once one subtask runs; a savepoint needs all
	// (a source not running yet declines it).
	waitAllRunning(t, c, id)
	target := t.TempDir()

	take := func(stop bool) (string, []*clusterv1.SavepointProgress) {
		stream, err := c.client.TriggerSavepoint(context.Background(), &clusterv1.TriggerSavepointRequest{JobId: id, TargetDir: "file://" + target, Stop: stop})
		if err != nil {
			t.Fatal(err)
		}
		var all []*clusterv1.SavepointProgress
		for {
			p, err := stream.Recv()
			if err != nil {
				t.Fatalf("savepoint stream: %v (progress %v)", err, all)
			}
			all = append(all, p)
			if p.GetDone() {
				return p.GetPath(), all
			}
		}
	}
	path, progress := take(false)
	if len(progress) < 2 || progress[len(progress)-1].GetTotal() != 2 {
		t.Fatalf("progress %v", progress)
	}
	md, err := storage.ReadMetadata(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if !md.GetSavepoint() || md.GetJobId() != id || len(md.GetOperators()[0].GetSubtasks()) != 2 {
		t.Fatalf("savepoint metadata %v", md)
	}
	if !strings.HasPrefix(path, "file://"+target+"/savepoint-") {
		t.Fatalf("savepoint path %s not under the target dir", path)
	}
	// The job keeps running; stop with a savepoint ends it FINISHED.
	path2, _ := take(true)
	last, _ := c.await(id)
	if last.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_FINISHED || !strings.Contains(last.GetMessage(), path2) {
		t.Fatalf("after stop: %v %q", last.GetSummary().GetStatus(), last.GetMessage())
	}
	// A stopped job takes no savepoint.
	stream, err := c.client.TriggerSavepoint(context.Background(), &clusterv1.TriggerSavepointRequest{JobId: id, TargetDir: "file://" + target})
	if err == nil {
		_, err = stream.Recv()
	}
	if err == nil || !strings.Contains(err.Error(), "savepoints need a RUNNING job") {
		t.Fatalf("savepoint of a finished job: %v", err)
	}
	// Resubmitting from the savepoint hands the state to the new job.
	resp, err := c.client.SubmitJob(context.Background(), &clusterv1.SubmitJobRequest{Graph: chainGraph("sp-restored", 2, nil), RestorePath: path})
	if err != nil {
		t.Fatal(err)
	}
	var r *clusterv1.TaskRestore
	t.Logf("job %s: waiting for its deployment with the savepoint's state (storage base %s)", resp.GetJobId(), path)
	waitFor(t, func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		r = src.restored[1]
		return r != nil && strings.TrimSuffix(r.GetStorageBase(), "/") == path && len(r.GetOperators()["src-v1"].GetStates()) == 1
	})
}

func TestCheckpointsDeletedOnCancelUnlessRetained(t *testing.T) {
	for _, retain := range []bool{false, true} {
		t.Run(fmt.Sprintf("retainOnCancel=%v", retain), func(t *testing.T) {
			dir := t.TempDir()
			c := newCluster(t, jobmanager.Options{CheckpointStorage: "file://" + dir})
			src := &ackingSource{restored: map[int32]*clusterv1.TaskRestore{}, notified: map[int64]bool{}}
			c.addTaskManager("tm-a", 2, src.run)
			id := c.submit(chainGraph("cancel", 1, &jobgraphv1.CheckpointConfig{Interval: durationpb.New(20 * time.Millisecond), RetainOnCancel: retain}))
			waitFor(t, func() bool {
				all, err := storage.ListCompleted(context.Background(), openStorage(t, "file://"+dir), id)
				return err == nil && len(all) > 0
			})
			if _, err := c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: id}); err != nil {
				t.Fatal(err)
			}
			c.await(id)
			// The deletion runs in the background once the job is CANCELED;
			// Close waits for it, so after Close it ran if it was going to.
			c.jm.Close()
			waitFor(t, func() bool {
				all, err := storage.ListCompleted(context.Background(), openStorage(t, "file://"+dir), id)
				return err == nil && (len(all) > 0) == retain
			})
		})
	}
}

// A restarted JobManager rebuilds a stored job's checkpoint history from
// the completed checkpoints in storage: `flowctl checkpoints` still lists
// them and names the latest one for --from-checkpoint.
func TestCheckpointHistoryAfterJobManagerRestart(t *testing.T) {
	checkpointHistoryAfterRestart(t, chainGraph("ck", 2, checkpointsEvery(50*time.Millisecond, 2)))
}

// A job record stored by an older JobManager (its graph's checkpoints
// section in the legacy JSON form, no typed CheckpointConfig) still loads
// in a restarted JobManager, with that configuration: the checkpoint
// history is found in the storage the section configures.
func TestLegacyStoredJobAfterJobManagerRestart(t *testing.T) {
	g := chainGraph("ck", 2, nil)
	g.Checkpoints = []byte(`{"interval":50000000,"mode":"exactly_once","unaligned":false,"alignedTimeout":0,"timeout":600000000000,` +
		`"minPause":0,"maxConcurrent":1,"tolerableFailures":3,"retain":2,"incremental":false,"retainOnCancel":false}`)
	g.Restart = []byte(`{"strategy":"none"}`)
	checkpointHistoryAfterRestart(t, g)
}

func checkpointHistoryAfterRestart(t *testing.T, g *jobgraphv1.JobGraph) {
	t.Helper()
	dataDir, ckDir := t.TempDir(), t.TempDir()
	opts := jobmanager.Options{DataDir: dataDir, CheckpointStorage: "file://" + ckDir}
	c := newCluster(t, opts)
	src := &ackingSource{restored: map[int32]*clusterv1.TaskRestore{}, notified: map[int64]bool{}}
	c.addTaskManager("tm-a", 2, src.run)
	id := c.submit(g)
	waitFor(t, func() bool {
		all, err := storage.ListCompleted(context.Background(), openStorage(t, "file://"+ckDir), id)
		return err == nil && len(all) == 2
	})
	c.jm.Close() // the JobManager goes away while the job runs

	// The job record keeps the graph in the form it was submitted in.
	rec, err := os.ReadFile(filepath.Join(dataDir, "jobs", id+".pb"))
	if err != nil {
		t.Fatal(err)
	}
	stored := &clusterv1.JobDetails{}
	if err := proto.Unmarshal(rec, stored); err != nil {
		t.Fatal(err)
	}
	if sg := stored.GetGraph(); !bytes.Equal(sg.GetCheckpoints(), g.GetCheckpoints()) || !proto.Equal(sg.GetCheckpointConfig(), g.GetCheckpointConfig()) {
		t.Fatalf("stored graph sections: legacy %q, typed %v; submitted %q, %v", sg.GetCheckpoints(), sg.GetCheckpointConfig(), g.GetCheckpoints(), g.GetCheckpointConfig())
	}

	all, err := storage.ListCompleted(context.Background(), openStorage(t, "file://"+ckDir), id)
	if err != nil || len(all) == 0 {
		t.Fatalf("completed checkpoints in storage: %v, %v", all, err)
	}
	latest := all[len(all)-1]
	jm, err := jobmanager.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer jm.Close()
	var resp *clusterv1.ListCheckpointsResponse
	waitFor(t, func() bool {
		resp, err = jm.ListCheckpoints(context.Background(), &clusterv1.ListCheckpointsRequest{JobId: id})
		return err == nil && len(resp.GetCheckpoints()) == len(all)
	})
	if resp.GetLatestCompletedPath() != latest.URL {
		t.Fatalf("latest completed path %q, want %q", resp.GetLatestCompletedPath(), latest.URL)
	}
	for i, cp := range resp.GetCheckpoints() { // newest first
		want := all[len(all)-1-i]
		if cp.GetId() != want.ID || cp.GetStatus() != clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED || cp.GetPath() != want.URL ||
			cp.GetStateSize() != want.Metadata.GetStats().GetStateSize() || cp.GetTriggerTimeMs() == 0 {
			t.Fatalf("checkpoint %d after restart: %v, want id %d at %s", i, cp, want.ID, want.URL)
		}
	}
}

// waitAllRunning waits until every subtask of the job reports RUNNING.
func waitAllRunning(t *testing.T, c *cluster, id string) {
	t.Helper()
	waitFor(t, func() bool {
		d, err := c.client.GetJob(context.Background(), &clusterv1.GetJobRequest{JobId: id})
		if err != nil {
			return false
		}
		for _, ti := range d.GetJob().GetTasks() {
			for _, s := range ti.GetSubtasks() {
				if s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING {
					return false
				}
			}
		}
		return true
	})
}
