package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/keygroup"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

func isCanceled(err error) bool { return errors.Is(err, context.Canceled) }

type outRec struct {
	Key string `json:"key"`
	Seq int64  `json:"seq"`
}

// readParts reads every committed part file of dir, by subtask.
func readParts(t *testing.T, dir string) map[int][]outRec {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]outRec{}
	for _, e := range ents {
		var sub, n int
		if _, err := fmtSscanf(e.Name(), &sub, &n); err != nil {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("uncommitted file left behind: %s", e.Name())
			}
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r outRec
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %q: %v", e.Name(), sc.Text(), err)
			}
			out[sub] = append(out[sub], r)
		}
		f.Close()
	}
	return out
}

func TestKeyedExactlyOnceTwoTaskManagers(t *testing.T) {
	const count, keys = 20000, 50
	c := newCluster(t, 2, exchange.Options{})
	outDir := filepath.Join(t.TempDir(), "out")
	gen := vertex("gen", "datagen", kSource, 2, map[string]any{"count": count, "keys": keys, "seed": 7})
	m := vertex("m", "map", kOperator, 3, map[string]any{"expression": `{"key": key, "seq": seq}`})
	m.KeyBy = "key"
	sink := vertex("out", "file", kSink, 3, map[string]any{"path": outDir})
	g := &jobgraphv1.JobGraph{Name: "keyed", MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{gen, m, sink},
		Edges:    []*jobgraphv1.Edge{edge("gen", "m", pHash), edge("m", "out", pForward)}}
	// Put each consumer on the other manager than the same-index producer so
	// both local and remote channels carry data.
	j := startJob(t, c, testRegistry(), g, jobOptions{assign: func(task string, s int) int {
		if task == "gen" {
			return s % 2
		}
		return (s + 1) % 2
	}})
	errs := j.wait(t, 60*time.Second)
	if err := firstError(errs); err != nil {
		t.Fatalf("job failed: %v", err)
	}
	if len(errs) != 5 {
		t.Fatalf("got %d task results, want 5", len(errs))
	}
	parts := readParts(t, outDir)
	seen := make([]int, count)
	keyOwner := map[string]int{}
	for sub, recs := range parts {
		for _, r := range recs {
			if r.Seq < 0 || r.Seq >= count {
				t.Fatalf("seq %d out of range", r.Seq)
			}
			seen[r.Seq]++
			if o, ok := keyOwner[r.Key]; ok && o != sub {
				t.Fatalf("key %s in subtasks %d and %d", r.Key, o, sub)
			}
			keyOwner[r.Key] = sub
			if want := keygroup.OperatorIndex(keygroup.Assign([]byte(r.Key), 128), 128, 3); want != sub {
				t.Fatalf("key %s in subtask %d, want %d", r.Key, sub, want)
			}
		}
	}
	for n, k := range seen {
		if k != 1 {
			t.Fatalf("record %d arrived %d times", n, k)
		}
	}
	if len(keyOwner) != keys {
		t.Errorf("saw %d keys, want %d", len(keyOwner), keys)
	}
	var subs []int
	for s := range parts {
		subs = append(subs, s)
	}
	sort.Ints(subs)
	if len(subs) != 3 {
		t.Errorf("output subtasks %v, want all 3", subs)
	}
}
