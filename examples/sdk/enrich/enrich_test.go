package enrich_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/examples/sdk/jobs"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/flowtest"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rules is the rules stream: "mid" is replaced and "gone" deleted before
// the first event's time, so the rules in force are any >= 0, mid >= 400
// and high >= 900.
const rules = `{"rule":"any","min":0,"ts":0}
{"rule":"mid","min":500,"ts":0}
{"rule":"high","min":900,"ts":0}
{"rule":"gone","min":1,"ts":0}
{"rule":"mid","min":400,"ts":0}
{"rule":"gone","delete":true,"ts":0}
`

// wantRules computes, outside the operator, which rules an event value meets.
func wantRules(v int64) []string {
	out := []string{"any"} // sorted by name
	if v >= 900 {
		out = append(out, "high")
	}
	if v >= 400 {
		out = append(out, "mid")
	}
	return out
}

// TestEnrichRescaled runs the broadcast-state job on the embedded cluster,
// stops it with a savepoint once the rules are in, and restores it with the
// enrichment at parallelism 3. The rules source restores past its lines and
// sends nothing again: the third subtask knows the rules only because broadcast
// state is replicated on restore. Every event comes out exactly once with
// the rules its value meets.
func TestEnrichRescaled(t *testing.T) {
	const keys, rate = 50, 3000
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.json")
	if err := os.WriteFile(rulesFile, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	spec := func(par int) string {
		return fmt.Sprintf(`name: enrich
parallelism: 2
operators:
  - {id: events, uid: events, type: datagen, watermarks: {timestamp: ts, outOfOrderness: 0s, interval: 20ms}, config: {keys: %d, rate: %d}}
  - {id: rules, uid: rules, type: example-rules, parallelism: 1, config: {path: %s}}
  - id: enriched
    uid: enriched
    type: example-enrich
    parallelism: %d
    inputs:
      - {from: events, keyBy: key}
      - {from: rules, partitioning: broadcast}
  - {id: out, uid: out, type: file, inputs: [enriched], config: {path: %s}}
`, keys, rate, rulesFile, par, out)
	}
	c := flowtest.Start(t, flowtest.Options{Registry: jobs.Registry(), TaskManagers: 2, Slots: 4})
	id := c.SubmitSpec(spec(2))
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	c.AwaitMetric("flow_operator_records_in_total", 3000, 30*time.Second, "flow_job", id, "operator", "enriched")
	sp := c.Savepoint(id, true)
	first := len(read(t, out))
	if first == 0 {
		t.Fatal("the first run emitted no events")
	}
	id = c.SubmitRequest(&clusterv1.SubmitJobRequest{Graph: c.ParseSpec(spec(3)), RestorePath: sp})
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	c.AwaitMetric("flow_operator_records_in_total", 3000, 30*time.Second, "flow_job", id, "operator", "enriched")
	drain(t, c, id)

	// The events source (parallelism 2) emitted, per subtask s, the
	// records n = s, s+2, ... up to where the drain ended it: each of
	// them must be out exactly once, with the rules its value meets.
	got := read(t, out)
	if len(got) < 6000 {
		t.Fatalf("%d events out, want at least 6000", len(got))
	}
	last := [2]int64{-1, -1}
	for n := range got {
		last[n%2] = max(last[n%2], n)
	}
	want := 0
	for s := range int64(2) {
		for n := s; n <= last[s]; n += 2 {
			want++
			e, ok := got[n]
			if !ok {
				t.Fatalf("event %d is missing (subtask %d emitted up to %d)", n, s, last[s])
			}
			if v := datagen.Value(0, n); !reflect.DeepEqual(e.Rules, wantRules(v)) {
				t.Fatalf("event %d (value %d) has rules %v, want %v", n, v, e.Rules, wantRules(v))
			}
		}
	}
	if want != len(got) {
		t.Fatalf("%d events out, want %d", len(got), want)
	}
}

// drain stops the job with a drained savepoint: the sources end, event
// time advances to the end (every held event comes out) and the sink
// commits.
func drain(t *testing.T, c *flowtest.Cluster, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := c.Client().TriggerSavepoint(ctx, &clusterv1.TriggerSavepointRequest{JobId: id, Stop: true, Drain: true})
	if err != nil {
		t.Fatal(err)
	}
	for {
		p, err := stream.Recv()
		if err != nil {
			t.Fatalf("drain job %s: %v", id, err)
		}
		if p.GetDone() {
			break
		}
	}
	c.AwaitStatus(id, flowtest.Finished, time.Minute)
}

type event struct {
	Seq   int64    `json:"seq"`
	Rules []string `json:"rules"`
}

// read returns the enriched events by seq, failing on a duplicate.
func read(t *testing.T, dir string) map[int64]event {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	got := map[int64]event{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s: %q: %v", f, sc.Text(), err)
			}
			if _, dup := got[e.Seq]; dup {
				t.Fatalf("event %d emitted twice", e.Seq)
			}
			got[e.Seq] = e
		}
		fh.Close()
	}
	return got
}
