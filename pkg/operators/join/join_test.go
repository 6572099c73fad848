package join_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/flowtest"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rec is one datagen record, as the test generates it itself.
type rec struct {
	Key string `json:"key"`
	Seq int64  `json:"seq"`
	TS  int64  `json:"ts"`
}

// gen returns the records a datagen source with these settings emits.
func gen(t *testing.T, seed, keys, count, rate int64) []rec {
	t.Helper()
	out := make([]rec, count)
	var buf []byte
	for n := range count {
		ts := n
		if rate > 0 {
			ts = n * 1000 / rate
		}
		buf = datagen.AppendRecord(buf[:0], seed, keys, n, ts)
		if err := json.Unmarshal(buf, &out[n]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// joined is one output row: the sequence numbers of both sides (-1 for a
// null right side) and the row's timestamp.
type joined struct {
	L, R int64
	TS   int64
}

// readJoined reads a file sink's output and checks every row's two sides
// have the same key.
func readJoined(t *testing.T, dir string) []joined {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	var out []joined
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l == "" {
				continue
			}
			var r struct {
				Left  rec  `json:"left"`
				Right *rec `json:"right"`
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("output row %q: %v", l, err)
			}
			j := joined{L: r.Left.Seq, R: -1}
			if r.Right != nil {
				if r.Right.Key != r.Left.Key {
					t.Fatalf("output row %q joins different keys", l)
				}
				j.R = r.Right.Seq
				j.TS = max(r.Left.TS, r.Right.TS)
			}
			out = append(out, j)
		}
	}
	return out
}

func sortJoined(js []joined) {
	sort.Slice(js, func(i, k int) bool {
		a, b := js[i], js[k]
		if a.L != b.L {
			return a.L < b.L
		}
		if a.R != b.R {
			return a.R < b.R
		}
		return a.TS < b.TS
	})
}

// sameRows compares two multisets of rows, reporting a few differences.
func sameRows(t *testing.T, what string, got, want []joined) {
	t.Helper()
	sortJoined(got)
	sortJoined(want)
	count := map[joined]int{}
	for _, j := range want {
		count[j]++
	}
	for _, j := range got {
		count[j]--
	}
	var diffs []string
	for j, n := range count {
		switch {
		case n > 0:
			diffs = append(diffs, fmt.Sprintf("missing %+v x%d", j, n))
		case n < 0:
			diffs = append(diffs, fmt.Sprintf("extra %+v x%d", j, -n))
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		t.Errorf("%s: %d rows, want %d; %d differ, e.g. %s", what, len(got), len(want), len(diffs), strings.Join(diffs[:min(5, len(diffs))], "; "))
	}
	if len(want) == 0 {
		t.Fatalf("%s: the brute-force join is empty: the test joins nothing", what)
	}
}

// bruteInterval joins every pair with equal keys and
// b.ts+lower <= a.ts <= b.ts+upper.
func bruteInterval(a, b []rec, lower, upper int64) []joined {
	var out []joined
	for _, x := range a {
		for _, y := range b {
			if x.Key == y.Key && y.TS+lower <= x.TS && x.TS <= y.TS+upper {
				out = append(out, joined{L: x.Seq, R: y.Seq, TS: max(x.TS, y.TS)})
			}
		}
	}
	return out
}

func twoSources(countA, countB, keysA, keysB, rate int64, extra string) string {
	return fmt.Sprintf(`  - {id: a, uid: a, type: datagen, watermarks: {timestamp: ts, outOfOrderness: 0s%[6]s}, config: {count: %[1]d, keys: %[3]d, seed: 1, rate: %[5]d}}
  - {id: b, uid: b, type: datagen, watermarks: {timestamp: ts, outOfOrderness: 0s%[6]s}, config: {count: %[2]d, keys: %[4]d, seed: 2, rate: %[5]d}}
`, countA, countB, keysA, keysB, rate, extra)
}

// TestIntervalJoinBruteForce: the interval join's output equals a
// brute-force join of the same generated inputs.
func TestIntervalJoinBruteForce(t *testing.T) {
	c := flowtest.Start(t, flowtest.Options{Slots: 8})
	const n, keys, lower, upper = 2000, 20, -5, 12
	out := t.TempDir()
	id := c.SubmitSpec(`name: interval
parallelism: 2
operators:
` + twoSources(n, n, keys, keys, 0, "") + `  - id: j
    type: interval-join
    inputs: [{from: a, keyBy: key}, {from: b, keyBy: key}]
    parallelism: 3
    config: {lower: -5ms, upper: 12ms}
  - {id: out, type: file, inputs: [j], config: {path: ` + out + `}}
`)
	c.AwaitStatus(id, flowtest.Finished, time.Minute)
	want := bruteInterval(gen(t, 1, keys, n, 0), gen(t, 2, keys, n, 0), lower, upper)
	sameRows(t, "interval join", readJoined(t, out), want)
}

// bruteWindow joins every pair with equal keys in the same window.
func bruteWindow(a, b []rec, size, slide int64) []joined {
	var out []joined
	for _, x := range a {
		for _, y := range b {
			if x.Key != y.Key {
				continue
			}
			for s := x.TS - x.TS%slide; s > x.TS-size; s -= slide {
				if y.TS >= s && y.TS < s+size {
					out = append(out, joined{L: x.Seq, R: y.Seq, TS: s + size - 1})
				}
			}
		}
	}
	return out
}

// TestWindowJoinBruteForce: tumbling and sliding window joins equal a
// brute-force join per window.
func TestWindowJoinBruteForce(t *testing.T) {
	c := flowtest.Start(t, flowtest.Options{Slots: 8})
	const n, keys = 1500, 25
	for _, w := range []struct{ size, slide int64 }{{50, 50}, {40, 10}} {
		out := t.TempDir()
		id := c.SubmitSpec(fmt.Sprintf(`name: window
parallelism: 2
operators:
%s  - id: j
    type: window-join
    inputs: [a, b]
    keyBy: key
    config: {size: %dms, slide: %dms}
  - {id: out, type: file, inputs: [j], config: {path: %s}}
`, twoSources(n, n, keys, keys, 0, ""), w.size, w.slide, out))
		c.AwaitStatus(id, flowtest.Finished, time.Minute)
		got := readJoined(t, out)
		// Rows are compared by their pair of records (a sliding window
		// pair appears once per window holding both).
		want := bruteWindow(gen(t, 1, keys, n, 0), gen(t, 2, keys, n, 0), w.size, w.slide)
		for i := range want {
			want[i].TS = 0
		}
		for i := range got {
			got[i].TS = 0
		}
		sameRows(t, fmt.Sprintf("window join size %d slide %d", w.size, w.slide), got, want)
	}
}

// TestRegularJoin: an inner join emits every pair of equal keys once; a
// left outer join also emits exactly one null row for each left record
// whose key the right side never has.
func TestRegularJoin(t *testing.T) {
	c := flowtest.Start(t, flowtest.Options{Slots: 8})
	const n, keysA, keysB = 400, 20, 10
	a, b := gen(t, 1, keysA, n, 0), gen(t, 2, keysB, n, 0)
	var pairs []joined
	for _, x := range a {
		for _, y := range b {
			if x.Key == y.Key {
				pairs = append(pairs, joined{L: x.Seq, R: y.Seq})
			}
		}
	}
	rightKeys := map[string]bool{}
	for _, y := range b {
		rightKeys[y.Key] = true
	}
	for _, kind := range []string{"inner", "left"} {
		out := t.TempDir()
		id := c.SubmitSpec(fmt.Sprintf(`name: regular
parallelism: 2
operators:
%s  - id: j
    type: join
    inputs: [{from: a, keyBy: key}, {from: b, keyBy: key}]
    config: {kind: %s, ttl: 1h}
  - {id: out, type: file, inputs: [j], config: {path: %s}}
`, twoSources(n, n, keysA, keysB, 0, ""), kind, out))
		c.AwaitStatus(id, flowtest.Finished, time.Minute)
		var matched []joined
		nulls := map[int64]int{}
		for _, j := range readJoined(t, out) {
			if j.R < 0 {
				nulls[j.L]++
				continue
			}
			j.TS = 0
			matched = append(matched, j)
		}
		sameRows(t, kind+" join", matched, pairs)
		for _, x := range a {
			switch {
			case kind == "inner" && nulls[x.Seq] > 0:
				t.Fatalf("inner join emitted a null row for left %d", x.Seq)
			case kind == "left" && !rightKeys[x.Key] && nulls[x.Seq] != 1:
				t.Fatalf("left join emitted %d null rows for left %d (key %s, absent on the right), want 1", nulls[x.Seq], x.Seq, x.Key)
			}
		}
	}
}

// TestIntervalJoinRescaleAndCleanup stops a running interval join with a
// savepoint, checks that the watermark kept its state to the rows that can
// still match (a small part of what it read), restores it at another
// parallelism and checks that both runs together emitted exactly the
// brute-force join: no match lost or duplicated across the rescale.
func TestIntervalJoinRescaleAndCleanup(t *testing.T) {
	const n, keys, rate, lower, upper = 16000, 20, 4000, -5, 10
	c := flowtest.Start(t, flowtest.Options{TaskManagers: 2, Slots: 6})
	out := t.TempDir()
	spec := func(par int) string {
		return fmt.Sprintf(`name: interval-rescale
parallelism: 2
operators:
%s  - id: j
    uid: j
    type: interval-join
    inputs: [{from: a, keyBy: key}, {from: b, keyBy: key}]
    parallelism: %d
    config: {lower: -5ms, upper: 10ms}
  - {id: out, uid: out, type: file, inputs: [j], config: {path: %s}}
`, twoSources(n, n, keys, keys, rate, ", interval: 10ms"), par, out)
	}
	id := c.SubmitSpec(spec(2))
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	const before = 8000
	c.AwaitMetric("flow_operator_records_in_total", before, 30*time.Second, "flow_job", id, "operator", "j")
	sp := c.Savepoint(id, true)

	rep, err := savepoint.Inspect(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	var rows int64
	for _, o := range rep.Operators {
		if o.UID != "j" {
			continue
		}
		s := o.State("rows3")
		if s == nil {
			t.Fatalf("the join's savepoint has no rows state: %+v", o)
		}
		if !s.Counted {
			t.Fatal("state rows not counted")
		}
		rows += s.Elements
	}
	// Without cleanup the state would hold a row for nearly every record
	// read (>= 8000); the watermark keeps only the last ~15ms plus its lag
	// (and, per key, at most as many useless rows as useful ones).
	if rows == 0 || rows > before/8 {
		t.Errorf("the join's state holds %d rows after reading %d records: want 1..%d", rows, before, before/8)
	}
	if n := len(readJoined(t, out)); n == 0 {
		t.Fatal("the first run committed no rows")
	}

	g := c.ParseSpec(spec(3))
	id = c.SubmitRequest(&clusterv1.SubmitJobRequest{Graph: g, RestorePath: sp})
	c.AwaitStatus(id, flowtest.Finished, time.Minute)
	want := bruteInterval(gen(t, 1, keys, n, rate), gen(t, 2, keys, n, rate), lower, upper)
	sameRows(t, "interval join over a rescale", readJoined(t, out), want)
}

// TestIntervalJoinFailover stops the TaskManager running most of an
// interval join's subtasks after checkpoints, adds a replacement, and
// checks that the restarted job's committed output is still exactly the
// brute-force join: restored join state and the exactly-once sink lose and
// duplicate no match.
func TestIntervalJoinFailover(t *testing.T) {
	for _, unaligned := range []bool{false, true} {
		t.Run(fmt.Sprintf("unaligned=%v", unaligned), func(t *testing.T) { intervalJoinFailover(t, unaligned) })
	}
}

func intervalJoinFailover(t *testing.T, unaligned bool) {
	const n, keys, rate, lower, upper = 9000, 20, 3000, -5, 10
	c := flowtest.Start(t, flowtest.Options{TaskManagers: 2, Slots: 4, HeartbeatTimeout: 2 * time.Second})
	out := t.TempDir()
	id := c.SubmitSpec(fmt.Sprintf(`name: interval-failover
parallelism: 2
operators:
%s  - id: j
    type: interval-join
    inputs: [{from: a, keyBy: key}, {from: b, keyBy: key}]
    config: {lower: -5ms, upper: 10ms}
  - {id: out, type: file, inputs: [j], config: {path: %s}}
checkpoints: {interval: 200ms, unaligned: %v}
restart: {strategy: fixed_delay, attempts: 10, delay: 100ms}
`, twoSources(n, n, keys, keys, rate, ", interval: 10ms"), out, unaligned))
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	c.AwaitMetric("flow_operator_records_in_total", 4000, 30*time.Second, "flow_job", id, "operator", "j")
	hosts := map[string]int{}
	for _, tv := range c.Job(id).GetTasks() {
		if tv.GetId() != "j" {
			continue
		}
		for _, st := range tv.GetSubtasks() {
			hosts[st.GetTaskManagerId()]++
		}
	}
	victim := 0
	if hosts["tm-1"] > hosts["tm-0"] {
		victim = 1
	}
	c.StopTaskManager(victim)
	c.AddTaskManager()
	d := c.AwaitStatus(id, flowtest.Finished, time.Minute)
	if a := d.GetSummary().GetAttempt(); a < 2 {
		t.Fatalf("the job finished in attempt %d: stopping tm-%d did not hit it", a, victim)
	}
	want := bruteInterval(gen(t, 1, keys, n, rate), gen(t, 2, keys, n, rate), lower, upper)
	sameRows(t, "interval join over a failover", readJoined(t, out), want)
}
