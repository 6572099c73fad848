// Package optest helps the built-in operators' tests: the records a
// datagen source emits (computed here, for brute-force answers), the file
// sink's output, and a job stopped with a savepoint and restored at another
// parallelism.
package optest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/flowtest"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// Rec is one datagen record.
type Rec struct {
	Key   string `json:"key"`
	Seq   int64  `json:"seq"`
	Value int64  `json:"value"`
	TS    int64  `json:"ts"`
	// Raw is the record's JSON, byte for byte as the source writes it.
	Raw []byte `json:"-"`
}

// Gen returns the records of a datagen source {seed, keys, count, rate}.
func Gen(t testing.TB, seed, keys, count, rate int64) []Rec {
	t.Helper()
	out := make([]Rec, count)
	for n := range count {
		ts := n
		if rate > 0 {
			ts = n * 1000 / rate
		}
		b := datagen.AppendRecord(nil, seed, keys, n, ts)
		if err := json.Unmarshal(b, &out[n]); err != nil {
			t.Fatal(err)
		}
		out[n].Raw = b
	}
	return out
}

// Source is the spec line of a datagen source with event time from ts
// (watermarks every 10ms, no out-of-orderness), at parallelism 1 so that
// each key's records arrive in sequence order.
func Source(seed, keys, count, rate int64) string {
	return fmt.Sprintf("  - {id: gen, uid: gen, type: datagen, parallelism: 1, watermarks: {timestamp: ts, outOfOrderness: 0s, interval: 10ms}, config: {count: %d, keys: %d, seed: %d, rate: %d}}\n", count, keys, seed, rate)
}

// Lines returns the file sink's committed output in dir, each line
// decoded into a map.
func Lines(t testing.TB, dir string) []map[string]any {
	t.Helper()
	parts, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	var out []map[string]any
	for _, p := range parts {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if len(sc.Bytes()) == 0 {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				f.Close()
				t.Fatalf("output line %q: %v", sc.Text(), err)
			}
			out = append(out, m)
		}
		f.Close()
	}
	return out
}

// Run submits spec and waits for it to finish.
func Run(t testing.TB, c *flowtest.Cluster, spec string) {
	t.Helper()
	id := c.SubmitSpec(spec)
	c.AwaitStatus(id, flowtest.Finished, 2*time.Minute)
}

// Rescaled runs spec(2), stops it with a savepoint once operator op has
// read at least `after` records, restores spec(3) from the savepoint and
// waits for it to finish. The specs must write to the same file sink (uid
// and path) so the output of both runs is read together.
func Rescaled(t testing.TB, c *flowtest.Cluster, spec func(parallelism int) string, op string, after float64) {
	t.Helper()
	id := c.SubmitSpec(spec(2))
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for c.Metric("flow_operator_records_in_total", "flow_job", id, "operator", op) < after {
		if time.Now().After(deadline) {
			t.Fatalf("%s read %v records in 30s, want %v before the savepoint", op, c.Metric("flow_operator_records_in_total", "flow_job", id, "operator", op), after)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	sp := c.Savepoint(id, true)
	g := c.ParseSpec(spec(3))
	id = c.SubmitRequest(&clusterv1.SubmitJobRequest{Graph: g, RestorePath: sp})
	c.AwaitStatus(id, flowtest.Finished, 2*time.Minute)
}

// ConfigError decodes raw with typ and builds the operator, and returns
// the error of whichever fails; the test fails when neither does or when
// the error is not one line.
func ConfigError(t testing.TB, typ api.OperatorType, raw map[string]any) error {
	t.Helper()
	cfg, err := typ.DecodeConfig(raw)
	if err == nil {
		_, err = typ.NewOperator(cfg)
	}
	if err == nil {
		t.Fatalf("config %v: no error", raw)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("config %v: the error is not one line: %q", raw, err)
	}
	return err
}
