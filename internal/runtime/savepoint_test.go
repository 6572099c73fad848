package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/operators/count"
	"github.com/flowrt/flow/pkg/operators/window"
	"github.com/flowrt/flow/pkg/statebackend"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// savepoint triggers a savepoint through the job master (with drain: the
// sources end their input first) and returns its id.
func (c *testCoordinator) savepoint(t *testing.T, drain bool) uint64 {
	t.Helper()
	target, err := storage.Open(context.Background(), c.spDir)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := c.m.TriggerSavepoint(context.Background(), time.Now(), target, false, drain)
	if err != nil {
		target.Close()
		t.Fatalf("savepoint: %v", err)
	}
	return sp.Progress().ID
}

// awaitCompleted waits until checkpoint id completed and returns its
// metadata; it fails when the checkpoint is aborted.
func (c *testCoordinator) awaitCompleted(t *testing.T, id uint64, timeout time.Duration) *checkpointv1.CheckpointMetadata {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		done := slices.Contains(c.completed, id)
		reason, aborted := c.aborted[id]
		md := c.latest
		c.mu.Unlock()
		switch {
		case done && md.GetCheckpointId() == int64(id):
			return md
		case done:
			t.Fatalf("checkpoint %d completed but a later one is the latest", id)
		case aborted:
			t.Fatalf("checkpoint %d aborted: %s (%s)", id, reason, c)
		case time.Now().After(deadline):
			t.Fatalf("checkpoint %d did not complete within %s: %s", id, timeout, c)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// operatorOf returns the snapshot state of an operator uid.
func operatorOf(t *testing.T, md *checkpointv1.CheckpointMetadata, uid string) *checkpointv1.OperatorState {
	t.Helper()
	for _, op := range md.GetOperators() {
		if op.GetUid() == uid {
			return op
		}
	}
	t.Fatalf("snapshot %d has no operator %q", md.GetCheckpointId(), uid)
	return nil
}

// sourceSplits reads the source splits each subtask of uid stored.
func (c *testCoordinator) sourceSplits(t *testing.T, md *checkpointv1.CheckpointMetadata, uid string) [][]string {
	t.Helper()
	op := operatorOf(t, md, uid)
	out := make([][]string, len(op.GetSubtasks()))
	for i, st := range op.GetSubtasks() {
		if len(st.GetSourcePosition()) > 0 {
			t.Errorf("subtask %d of split source %s stored a position %q", st.GetSubtask(), uid, st.GetSourcePosition())
		}
		sts, err := snapshot.ReadOperatorState(context.Background(), c.filesOf(t, md).Open, st.GetOperatorState())
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range sts {
			if s.Spec.Name == api.SourceSplitsState {
				found = true
				if s.Spec.Mode != api.SplitList {
					t.Errorf("source splits stored as %v, want split-list", s.Spec.Mode)
				}
				for _, it := range s.Items {
					out[i] = append(out[i], string(it))
				}
			}
		}
		if !found {
			t.Errorf("subtask %d of source %s stored no %q state", st.GetSubtask(), uid, api.SourceSplitsState)
		}
	}
	return out
}

// keyedEntries counts the entries of an operator's keyed state in a
// snapshot (canonical files).
func (c *testCoordinator) keyedEntries(t *testing.T, md *checkpointv1.CheckpointMetadata, uid string) int {
	t.Helper()
	n := 0
	for _, st := range operatorOf(t, md, uid).GetSubtasks() {
		for _, h := range st.GetKeyed() {
			for _, f := range h.GetFiles() {
				rc, err := c.filesOf(t, md).Open(context.Background(), f.GetPath())
				if err != nil {
					t.Fatal(err)
				}
				_, err = snapshot.ReadKeyed(bufio.NewReader(rc), f.GetPath(), func(statebackend.Entry) error { n++; return nil })
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return n
}

// rescaledKeyedCount is the keyed-count job with every vertex at par.
func rescaledKeyedCount(out string, records, keys, rate int64, backend string, par int32) *jobgraphv1.JobGraph {
	g := keyedCountGraph(out, records, keys, rate, backend, `{"mode":"exactly_once"}`)
	for _, v := range g.GetVertices() {
		v.Parallelism = par
	}
	return g
}

// TestSavepointRescaleSourceSplits stops the keyed-count job with a
// savepoint at parallelism 1, restarts it from the savepoint at
// parallelism 3 (switching heap -> pebble), stops it again and finishes it
// at parallelism 2 (pebble -> heap). The datagen splits move to the new
// subtasks (the single split is divided into three), so the records
// generated after each restore are exactly those not generated before:
// for every key the output holds the counts 1..N once each.
func TestSavepointRescaleSourceSplits(t *testing.T) {
	const records, keys, rate = 9000, 30, 6000
	out := filepath.Join(t.TempDir(), "out")
	c := newCluster(t, 2, exchange.Options{})
	coord := newTestCoordinator(t, keyedCountGraph(out, records, keys, rate, "", ""), "file://"+filepath.ToSlash(t.TempDir()), nil)
	attempts := []struct {
		par     int32
		backend string
	}{{1, `{"type":"heap"}`}, {3, `{"type":"pebble"}`}, {2, `{"type":"heap"}`}}
	var splits [][]string
	for i, a := range attempts {
		g := rescaledKeyedCount(out, records, keys, rate, a.backend, a.par)
		coord.g = g
		o := coord.start(jobOptions{attempt: int32(i), flushInterval: 5 * time.Millisecond}, time.Hour)
		reg := newKeepRegistry()
		o.metrics = reg
		j := startJob(t, c, checkpointRegistry(), g, o)
		if i == len(attempts)-1 {
			if err := firstError(j.wait(t, 60*time.Second)); err != nil {
				t.Fatalf("last attempt (parallelism %d): %v", a.par, err)
			}
			coord.halt()
			break
		}
		// A share of the input reaches count before the savepoint.
		waitFor(t, 20*time.Second, "records at count", func() bool {
			return reg.sum(t, "flow_task_records_in_total", map[string]string{"task": "count"}) >= records/9
		})
		md := coord.awaitCompleted(t, coord.savepoint(t, false), 20*time.Second)
		j.cancel() // stop after the savepoint, as the JobManager does
		errs := j.wait(t, 20*time.Second)
		coord.halt()
		for task, err := range errs {
			if err == nil {
				t.Fatalf("attempt %d: %s finished before the stop: make the job run longer", i, task)
			}
		}
		splits = coord.sourceSplits(t, md, "src-v1")
		t.Logf("attempt %d (parallelism %d): savepoint %d, source splits %v", i, a.par, md.GetCheckpointId(), splits)
	}
	// The savepoint of parallelism 3 holds the three parts of the divided
	// split, one per subtask.
	if len(splits) != 3 {
		t.Fatalf("splits of the parallelism-3 savepoint: %v", splits)
	}
	for i, s := range splits {
		if len(s) != 1 || !strings.Contains(s[0], `"stride":3`) {
			t.Errorf("subtask %d of 3 stored splits %v, want one split of stride 3", i, s)
		}
	}
	checkExactlyOnceCounts(t, out, records, keys, false)
}

// TestStopWithDrain: a savepoint with Drain makes the sources emit the
// final watermark before the barrier, so every event-time window fires
// before the snapshot (the savepoint holds no window state, whereas one
// taken without drain does), and the job then finishes by itself (every
// subtask returns nil) with all windows in the output.
func TestStopWithDrain(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	src := vertex("src", "datagen", kSource, 2, map[string]any{"keys": 5, "rate": 4000})
	src.Uid = "src-v1"
	win := vertex("win", "window", kOperator, 2, map[string]any{"size": "1s"})
	win.Uid, win.KeyBy = "win-v1", "key"
	sink := vertex("sink", "file", kSink, 2, map[string]any{"path": out})
	sink.Uid = "sink-v1"
	g := &jobgraphv1.JobGraph{Name: "drain", MaxParallelism: 128,
		Vertices:     []*jobgraphv1.Vertex{src, win, sink},
		Edges:        []*jobgraphv1.Edge{edge("src", "win", pHash), edge("win", "sink", pForward)},
		StateBackend: []byte(`{"type":"heap"}`), Checkpoints: []byte(`{"mode":"exactly_once"}`)}
	c := newCluster(t, 2, exchange.Options{})
	coord := newTestCoordinator(t, g, "file://"+filepath.ToSlash(t.TempDir()), nil)
	o := coord.start(jobOptions{flushInterval: 5 * time.Millisecond}, time.Hour)
	reg := newKeepRegistry()
	o.metrics = reg
	j := startJob(t, c, testRegistry(window.Type(), count.Type()), g, o)
	atWindows := func() float64 {
		return reg.sum(t, "flow_task_records_in_total", map[string]string{"task": "win"})
	}

	waitFor(t, 20*time.Second, "records at the windows", func() bool { return atWindows() > 0 })
	plain := coord.awaitCompleted(t, coord.savepoint(t, false), 20*time.Second)
	if n := coord.keyedEntries(t, plain, "win-v1"); n == 0 {
		t.Fatal("a savepoint without drain holds no window state: no records reached the windows")
	}
	// The job goes on after a plain savepoint.
	after := atWindows()
	waitFor(t, 20*time.Second, "records at the windows after the savepoint", func() bool { return atWindows() > after })
	drained := coord.awaitCompleted(t, coord.savepoint(t, true), 20*time.Second)
	// Without a cancel, every subtask finishes by itself.
	for task, err := range j.wait(t, 20*time.Second) {
		if err != nil {
			t.Errorf("%s: %v", task, err)
		}
	}
	coord.halt()
	if n := coord.keyedEntries(t, drained, "win-v1"); n != 0 {
		t.Fatalf("the drained savepoint holds %d window state entries: the windows did not fire before it", n)
	}
	// Records generated before the drain: subtask s of 2 generated the
	// numbers s, s+2, ... below its split's next.
	var generated int64
	for s, sp := range coord.sourceSplits(t, drained, "src-v1") {
		var x struct{ Stride, Next int64 }
		if len(sp) != 1 || json.Unmarshal([]byte(sp[0]), &x) != nil || x.Stride != 2 {
			t.Fatalf("subtask %d splits %v", s, sp)
		}
		generated += (x.Next - int64(s)) / 2
	}
	var windowed int64
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("uncommitted file %s after a drained stop", e.Name())
			continue
		}
		b, err := os.ReadFile(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var w struct{ Count int64 }
			if l == "" {
				continue
			}
			if err := json.Unmarshal([]byte(l), &w); err != nil {
				t.Fatalf("%s: %q: %v", e.Name(), l, err)
			}
			windowed += w.Count
		}
	}
	if generated == 0 || windowed != generated {
		t.Fatalf("windows in the output count %d records; the sources generated %d before the drain", windowed, generated)
	}
	t.Logf("drained after %d records; %s", generated, coord)
}

// TestSourcePositionsBeforeSplits: a snapshot that holds a position per
// source subtask (taken before sources had splits) restores at the same
// parallelism through Source.Restore, and is refused with a clear error at
// another parallelism instead of generating records twice.
func TestSourcePositionsBeforeSplits(t *testing.T) {
	base := "file://" + filepath.ToSlash(t.TempDir())
	restoreWith := func(positions ...string) func(d *clusterv1.TaskDeployment, env *TaskEnv) {
		return func(d *clusterv1.TaskDeployment, env *TaskEnv) {
			if d.GetId().GetTask() != "src" {
				return
			}
			ro := &clusterv1.RestoreOperator{}
			for i, p := range positions {
				ro.States = append(ro.States, &checkpointv1.SubtaskState{Subtask: int32(i), SourcePosition: []byte(p)})
			}
			d.Restore = &clusterv1.TaskRestore{CheckpointId: 4, Location: "job-1/chk-4", StorageBase: base,
				Operators: map[string]*clusterv1.RestoreOperator{"src": ro}}
		}
	}
	graph := func(par int32, out string) *jobgraphv1.JobGraph {
		src := vertex("src", "datagen", kSource, par, map[string]any{"count": 100})
		sink := vertex("sink", "file", kSink, 1, map[string]any{"path": out})
		return &jobgraphv1.JobGraph{Name: "positions", MaxParallelism: 128,
			Vertices: []*jobgraphv1.Vertex{src, sink}, Edges: []*jobgraphv1.Edge{edge("src", "sink", pRebal)}}
	}
	c := newCluster(t, 1, exchange.Options{})

	out := filepath.Join(t.TempDir(), "out")
	j := startJob(t, c, testRegistry(), graph(1, out), jobOptions{env: restoreWith("60")})
	if err := firstError(j.wait(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(out, e.Name()))
		for _, l := range strings.Fields(string(b)) {
			var r struct{ Seq int64 }
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, r.Seq)
		}
	}
	slices.Sort(seqs)
	if len(seqs) != 40 || seqs[0] != 60 || seqs[39] != 99 {
		t.Fatalf("restored from position 60 of 100, the output holds %d records from %v", len(seqs), seqs[:min(3, len(seqs))])
	}

	srcDone := make(chan struct{}, 3)
	j = startJob(t, c, testRegistry(), graph(3, filepath.Join(t.TempDir(), "out2")), jobOptions{env: restoreWith("10", "11"), noFailFast: true,
		done: func(d *clusterv1.TaskDeployment, err error) {
			if d.GetId().GetTask() == "src" {
				srcDone <- struct{}{}
			}
		}})
	for range 3 {
		select {
		case <-srcDone:
		case <-time.After(20 * time.Second):
			t.Fatal("the source subtasks did not end")
		}
	}
	j.cancel() // the sink waits for inputs that never come
	errs := j.wait(t, 20*time.Second)
	for sub := range 3 {
		err := errs["src/"+string(rune('0'+sub))]
		if err == nil || !strings.Contains(err.Error(), "cannot be redistributed to parallelism 3") || !strings.Contains(err.Error(), "checkpoint 4") {
			t.Errorf("source subtask %d restored positions of 2 subtasks at parallelism 3: %v", sub, err)
		}
	}
}
