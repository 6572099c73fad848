package dedup_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/examples/sdk/jobs"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/flowtest"
	"github.com/flowrt/flow/pkg/jobbuilder"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// keysOf reads the file sink's output: how often each key was emitted.
func keysOf(t *testing.T, dir string) map[string]int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	seen := map[string]int{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var r struct {
				Key string `json:"key"`
			}
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %q: %v", f, sc.Text(), err)
			}
			seen[r.Key]++
		}
		fh.Close()
	}
	return seen
}

// wantKeys are the distinct keys datagen generates in n records.
func wantKeys(n, keys int64) map[string]bool {
	want := map[string]bool{}
	for i := range n {
		want["k"+itoa(datagen.KeyIndex(0, keys, i))] = true
	}
	return want
}

func itoa(i int64) string { b, _ := json.Marshal(i); return string(b) }

// TestDedupOnEmbeddedCluster runs a job built in Go with the module's own
// type on an in-process cluster: every key comes out exactly once, and the
// operator's own metric counts the repeats while it runs.
func TestDedupOnEmbeddedCluster(t *testing.T) {
	const records, keys = 6000, 300
	c := flowtest.Start(t, flowtest.Options{Registry: jobs.Registry(), TaskManagers: 2, Slots: 2})
	out := t.TempDir()
	j := jobbuilder.New("dedup").Parallelism(2)
	gen := j.Source("gen", "datagen").Config(jobbuilder.Config{"count": records, "keys": keys, "rate": 3000})
	unique := j.Operator("unique", "example-dedup", gen).KeyBy("key").Config(jobbuilder.Config{"ttl": time.Hour})
	j.Sink("out", "file", unique).Config(jobbuilder.Config{"path": out})
	id := c.Submit(j.MustBuild(jobs.Registry()))

	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for c.Metric("example_dedup_dropped_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("example_dedup_dropped_total stayed 0 while the job ran")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	c.AwaitStatus(id, flowtest.Finished, time.Minute)

	got, want := keysOf(t, out), wantKeys(records, keys)
	if len(got) != len(want) {
		t.Errorf("%d distinct keys out, want %d", len(got), len(want))
	}
	for k, n := range got {
		if n != 1 || !want[k] {
			t.Errorf("key %q emitted %d times (generated: %v), want once", k, n, want[k])
		}
	}
}

// TestDedupTTL: with a TTL shorter than the gaps between a key's records,
// keys are forgotten and pass again (the state expires).
func TestDedupTTL(t *testing.T) {
	const keys = 20
	c := flowtest.Start(t, flowtest.Options{Registry: jobs.Registry()})
	out := t.TempDir()
	// 1000 records/s over 20 keys: a key repeats every ~20ms on average.
	id := c.SubmitSpec(`name: short-ttl
operators:
  - {id: gen, type: datagen, config: {count: 2000, keys: 20, rate: 1000}}
  - {id: unique, type: example-dedup, inputs: [gen], keyBy: key, config: {ttl: 5ms}}
  - {id: out, type: file, inputs: [unique], config: {path: ` + out + `}}
`)
	c.AwaitStatus(id, flowtest.Finished, time.Minute)
	total := 0
	for _, n := range keysOf(t, out) {
		total += n
	}
	if total <= keys {
		t.Errorf("%d records passed with a 5ms TTL, want more than the %d distinct keys (expired keys pass again)", total, keys)
	}
}
