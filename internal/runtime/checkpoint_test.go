package runtime

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/operators/count"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// keyedCountGraph is datagen -> count (keyBy key) -> file sink, with the
// given state backend and checkpoints sections.
func keyedCountGraph(out string, records, keys, rate int64, backend, checkpoints string) *jobgraphv1.JobGraph {
	src := vertex("src", "datagen", kSource, 2, map[string]any{"count": records, "keys": keys, "rate": rate})
	src.Uid = "src-v1"
	cnt := vertex("count", "count", kOperator, 2, nil)
	cnt.Uid, cnt.KeyBy = "count-v1", "key"
	sink := vertex("sink", "file", kSink, 2, map[string]any{"path": out})
	sink.Uid = "sink-v1"
	return &jobgraphv1.JobGraph{Name: "keyed-count", MaxParallelism: 128,
		Vertices:     []*jobgraphv1.Vertex{src, cnt, sink},
		Edges:        []*jobgraphv1.Edge{edge("src", "count", pHash), edge("count", "sink", pForward)},
		StateBackend: []byte(backend), Checkpoints: []byte(checkpoints)}
}

func checkpointRegistry() *api.Registry { return testRegistry(count.Type()) }

// countLine is one output line of the count operator.
type countLine struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

// checkExactlyOnceCounts checks that for every key k the committed output
// holds the counts 1..N(k) each exactly once (atLeastOnce: at least once),
// N(k) being the number of datagen records of k, and that no uncommitted
// file is left.
func checkExactlyOnceCounts(t *testing.T, dir string, records, keys int64, atLeastOnce bool) {
	t.Helper()
	want := map[string]int64{}
	for n := int64(0); n < records; n++ {
		want[fmt.Sprintf("k%d", datagen.KeyIndex(0, keys, n))]++
	}
	got := map[string]map[int64]int{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("uncommitted file left behind: %s", e.Name())
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l countLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: %q: %v", e.Name(), sc.Text(), err)
			}
			if got[l.Key] == nil {
				got[l.Key] = map[int64]int{}
			}
			got[l.Key][l.Count]++
		}
		f.Close()
	}
	bad := 0
	for k, n := range want {
		for c := int64(1); c <= n; c++ {
			seen := got[k][c]
			if seen == 0 || (!atLeastOnce && seen != 1) {
				if bad < 10 {
					t.Errorf("key %s count %d appears %d times", k, c, seen)
				}
				bad++
			}
		}
		// At-least-once may count a replayed record twice (a record that
		// passed its barrier before the snapshot is replayed after the
		// restore), so only exactly-once bounds the counts by N.
		if !atLeastOnce && len(got[k]) != int(n) {
			if bad < 10 {
				t.Errorf("key %s: %d distinct counts, want %d", k, len(got[k]), n)
			}
			bad++
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d keys in the output, want %d", len(got), len(want))
	}
}

// TestCheckpointRestoreExactlyOnce runs the keyed-count job with
// checkpoints driven by a real coordinator and file:// storage, cancels
// every subtask after some checkpoints completed (a failure), redeploys the
// job restored from the latest completed checkpoint, and checks that the
// output is exactly once: for every key, counts 1..N once each.
func TestCheckpointRestoreExactlyOnce(t *testing.T) {
	cases := []struct {
		name, backend, checkpoints string
		opts                       *clusterv1.CheckpointOptions
		atLeastOnce                bool
	}{
		{"heap-aligned", `{"type":"heap"}`, `{"mode":"exactly_once"}`, nil, false},
		{"pebble-aligned-incremental", `{"type":"pebble"}`, `{"mode":"exactly_once","incremental":true}`, &clusterv1.CheckpointOptions{Incremental: true}, false},
		{"heap-unaligned", `{"type":"heap"}`, `{"mode":"exactly_once","unaligned":true}`, &clusterv1.CheckpointOptions{Unaligned: true}, false},
		{"pebble-unaligned", `{"type":"pebble"}`, `{"mode":"exactly_once","unaligned":true}`, &clusterv1.CheckpointOptions{Unaligned: true}, false},
		{"heap-at-least-once", `{"type":"heap"}`, `{"mode":"at_least_once"}`, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const records, keys, rate = 12000, 40, 8000
			out := filepath.Join(t.TempDir(), "out")
			g := keyedCountGraph(out, records, keys, rate, tc.backend, tc.checkpoints)
			c := newCluster(t, 2, exchange.Options{})
			coord := newTestCoordinator(t, g, "file://"+filepath.ToSlash(t.TempDir()), tc.opts)

			o := coord.start(jobOptions{attempt: 0, flushInterval: 5 * time.Millisecond}, 40*time.Millisecond)
			j := startJob(t, c, checkpointRegistry(), g, o)
			deadline := time.Now().Add(20 * time.Second)
			for coord.completedCount() < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("no 3 completed checkpoints within 20s: %s", coord)
				}
				time.Sleep(5 * time.Millisecond)
			}
			j.cancel() // the failure: every subtask is canceled mid-run
			errs := j.wait(t, 20*time.Second)
			coord.halt()
			finished := 0
			for _, err := range errs {
				if err == nil {
					finished++
				}
			}
			if finished == len(errs) {
				t.Fatalf("the job finished before the failure: make it run longer")
			}

			o = coord.start(jobOptions{attempt: 1, flushInterval: 5 * time.Millisecond}, 40*time.Millisecond)
			j = startJob(t, c, checkpointRegistry(), g, o)
			if err := firstError(j.wait(t, 60*time.Second)); err != nil {
				t.Fatalf("restored attempt: %v", err)
			}
			coord.halt()
			t.Logf("%s", coord)
			checkExactlyOnceCounts(t, out, records, keys, tc.atLeastOnce)
		})
	}
}

// slowSink sleeps per record: a sink that backpressures the whole job.
type slowSink struct{ d time.Duration }

func (s *slowSink) Open(api.Context) error { return nil }
func (s *slowSink) Write(api.Record) error { time.Sleep(s.d); return nil }
func (s *slowSink) Finish() error          { return nil }
func (s *slowSink) Close() error           { return nil }

func slowSinkType(d time.Duration) api.OperatorType {
	return api.OperatorType{Name: "slow", Kind: api.KindSink, NewSink: func(api.Config) (api.Sink, error) { return &slowSink{d: d}, nil }}
}

// TestUnalignedCheckpointsUnderBackpressure: behind a slow sink every
// exchange queue is full. An aligned barrier waits behind the queued
// buffers of every channel; an unaligned one overtakes them (their data
// goes into the snapshot), so its checkpoint completes much sooner. Both
// jobs run on two exchange managers, so barriers cross local and remote
// channels.
func TestUnalignedCheckpointsUnderBackpressure(t *testing.T) {
	first := map[string]time.Duration{}
	for _, mode := range []string{"aligned", "unaligned"} {
		checkpoints := `{"mode":"exactly_once"}`
		opts := &clusterv1.CheckpointOptions{}
		if mode == "unaligned" {
			checkpoints, opts.Unaligned = `{"mode":"exactly_once","unaligned":true}`, true
		}
		src := vertex("src", "datagen", kSource, 2, map[string]any{"keys": 50})
		cnt := vertex("count", "count", kOperator, 2, nil)
		cnt.KeyBy = "key"
		sink := vertex("sink", "slow", kSink, 2, nil)
		g := &jobgraphv1.JobGraph{Name: "backpressure", MaxParallelism: 128,
			Vertices:    []*jobgraphv1.Vertex{src, cnt, sink},
			Edges:       []*jobgraphv1.Edge{edge("src", "count", pHash), edge("count", "sink", pForward)},
			Checkpoints: []byte(checkpoints)}
		c := newCluster(t, 2, exchange.Options{BufferSize: 4096})
		coord := newTestCoordinator(t, g, "file://"+filepath.ToSlash(t.TempDir()), opts)
		o := coord.start(jobOptions{}, time.Second)
		j := startJob(t, c, testRegistry(count.Type(), slowSinkType(2*time.Millisecond)), g, o)
		deadline := time.Now().Add(20 * time.Second)
		var d time.Duration
		for ok := false; !ok; d, ok = coord.firstDuration() {
			if time.Now().After(deadline) {
				d = 20 * time.Second // stalled
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		j.cancel()
		j.wait(t, 20*time.Second)
		coord.halt()
		first[mode] = d
		t.Logf("%s: first checkpoint completed %s after its trigger (%s)", mode, d, coord)
	}
	if first["unaligned"] > 3*time.Second {
		t.Errorf("unaligned checkpoint took %s under backpressure, want < 3s", first["unaligned"])
	}
	if first["aligned"] < 2*first["unaligned"] {
		t.Errorf("aligned checkpoint took %s, unaligned %s: the unaligned barrier did not overtake the queued buffers", first["aligned"], first["unaligned"])
	}
}

// TestRestoreFailureNamesCheckpointAndFile: a restore whose state file is
// missing fails the task with one line naming the checkpoint and the file.
func TestRestoreFailureNamesCheckpointAndFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	g := keyedCountGraph(out, 100, 5, 0, `{"type":"heap"}`, `{"mode":"exactly_once"}`)
	c := newCluster(t, 1, exchange.Options{})
	base := "file://" + filepath.ToSlash(t.TempDir())
	countDone := make(chan struct{}, 2)
	o := jobOptions{noFailFast: true, done: func(d *clusterv1.TaskDeployment, err error) {
		if d.GetId().GetTask() == "count" {
			countDone <- struct{}{}
		}
	}, env: func(d *clusterv1.TaskDeployment, env *TaskEnv) {
		if d.GetId().GetTask() != "count" {
			return
		}
		sub := d.GetId().GetSubtask()
		d.Restore = &clusterv1.TaskRestore{CheckpointId: 3, Location: "job-1/chk-3", StorageBase: base,
			Operators: map[string]*clusterv1.RestoreOperator{"count-v1": {States: []*checkpointv1.SubtaskState{{
				Subtask: sub,
				Keyed: []*checkpointv1.KeyedStateHandle{{KeyGroupStart: 0, KeyGroupEnd: 128, Format: "canonical",
					Files: []*checkpointv1.FileHandle{{Path: "job-1/chk-3/count-v1-missing.kst", Size: 10}}}},
			}}}}}
	}}
	j := startJob(t, c, checkpointRegistry(), g, o)
	for range 2 {
		select {
		case <-countDone:
		case <-time.After(30 * time.Second):
			t.Fatal("the count subtasks did not end")
		}
	}
	j.cancel()
	errs := j.wait(t, 30*time.Second)
	// Subtask 0 of 2 first reads the checkpoint's _metadata (to tell a
	// rescale from parallelism 1); there is none here, which it reports.
	if err := errs["count/0"]; err == nil || !strings.Contains(err.Error(), "checkpoint 3") {
		t.Fatalf("subtask 0: %v", err)
	}
	err := errs["count/1"]
	if err == nil {
		t.Fatal("the job restored from a missing file")
	}
	msg := err.Error()
	if !strings.Contains(msg, "checkpoint 3") || !strings.Contains(msg, "count-v1-missing.kst") || strings.Contains(msg, "\n") {
		t.Fatalf("error %q: want one line naming checkpoint 3 and the missing file", msg)
	}
}

// slowPass forwards every record after sleeping d: a slow operator chained
// behind count, so the src -> count exchange is always full.
type slowPass struct{ d time.Duration }

func (o *slowPass) Open(api.Context) error { return nil }
func (o *slowPass) ProcessRecord(r api.Record, out api.Collector) error {
	time.Sleep(o.d)
	out.Collect(r)
	return nil
}
func (o *slowPass) Finish(api.Collector) error { return nil }
func (o *slowPass) Close() error               { return nil }

func slowPassType(d time.Duration) api.OperatorType {
	return api.OperatorType{Name: "slowpass", Kind: api.KindOperator,
		NewOperator: func(api.Config) (api.Operator, error) { return &slowPass{d: d}, nil }}
}

// TestUnalignedCheckpointRescale: unaligned checkpoints survive a change
// of parallelism. The keyed-count job runs backpressured (a slow operator
// after count) with unaligned checkpoints, so its checkpoints hold
// in-flight data: buffers queued on the src -> count exchange (input data
// of count, redistributed by key group) and buffers the barrier overtook
// in the sources' partitions (output data, routed again to the new count
// subtasks). It is canceled, then restored from the latest checkpoint with
// count at another parallelism, and the committed output must be exactly
// once: for every key, the counts 1..N once each.
func TestUnalignedCheckpointRescale(t *testing.T) {
	for _, to := range []int32{3, 1} {
		t.Run(fmt.Sprintf("2-to-%d", to), func(t *testing.T) {
			const records, keys = 16000, 40
			out := filepath.Join(t.TempDir(), "out")
			graph := func(p int32) *jobgraphv1.JobGraph {
				src := vertex("src", "datagen", kSource, 2, map[string]any{"count": records, "keys": keys})
				src.Uid = "src-v1"
				cnt := vertex("count", "count", kOperator, p, nil)
				cnt.Uid, cnt.KeyBy = "count-v1", "key"
				slow := vertex("slow", "slowpass", kOperator, p, nil)
				slow.Uid = "slow-v1"
				sink := vertex("sink", "file", kSink, p, map[string]any{"path": out})
				sink.Uid = "sink-v1"
				return &jobgraphv1.JobGraph{Name: "keyed-count", MaxParallelism: 128,
					Vertices:     []*jobgraphv1.Vertex{src, cnt, slow, sink},
					Edges:        []*jobgraphv1.Edge{edge("src", "count", pHash), edge("count", "slow", pForward), edge("slow", "sink", pForward)},
					StateBackend: []byte(`{"type":"heap"}`), Checkpoints: []byte(`{"mode":"exactly_once","unaligned":true}`)}
			}
			reg := testRegistry(count.Type(), slowPassType(100*time.Microsecond))
			c := newCluster(t, 2, exchange.Options{BufferSize: 4096})
			coord := newTestCoordinator(t, graph(2), "file://"+filepath.ToSlash(t.TempDir()), &clusterv1.CheckpointOptions{Unaligned: true})

			o := coord.start(jobOptions{attempt: 0, flushInterval: 5 * time.Millisecond}, 40*time.Millisecond)
			j := startJob(t, c, reg, graph(2), o)
			deadline := time.Now().Add(20 * time.Second)
			for coord.completedCount() < 3 || !holdsInFlight(coord.latestMetadata(), "count-v1", "src-v1") {
				if time.Now().After(deadline) {
					t.Fatalf("no checkpoint with input and output in-flight data within 20s: %s", coord)
				}
				time.Sleep(2 * time.Millisecond)
			}
			j.cancel()
			errs := j.wait(t, 20*time.Second)
			coord.halt()
			if firstError(errs) == nil {
				t.Fatal("the job finished before the failure: make it run longer")
			}
			md := coord.latestMetadata()
			if !holdsInFlight(md, "count-v1", "src-v1") {
				t.Fatalf("the restore point (checkpoint %d) holds no in-flight data for both count and src: the test shows nothing", md.GetCheckpointId())
			}

			coord.g = graph(to)
			o = coord.start(jobOptions{attempt: 1, flushInterval: 5 * time.Millisecond}, 40*time.Millisecond)
			j = startJob(t, c, reg, graph(to), o)
			if err := firstError(j.wait(t, 60*time.Second)); err != nil {
				t.Fatalf("restored attempt at parallelism %d: %v", to, err)
			}
			coord.halt()
			t.Logf("restored checkpoint %d at parallelism %d; %s", md.GetCheckpointId(), to, coord)
			checkExactlyOnceCounts(t, out, records, keys, false)
		})
	}
}

// holdsInFlight reports whether md holds in-flight data for every uid.
func holdsInFlight(md *checkpointv1.CheckpointMetadata, uids ...string) bool {
	found := map[string]bool{}
	for _, op := range md.GetOperators() {
		for _, st := range op.GetSubtasks() {
			if len(st.GetInFlight()) > 0 {
				found[op.GetUid()] = true
			}
		}
	}
	for _, u := range uids {
		if !found[u] {
			return false
		}
	}
	return true
}
