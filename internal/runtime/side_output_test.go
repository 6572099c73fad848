package runtime

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// splitOp sends records with an even seq to its main output and those with
// an odd seq to side output "odd".
type splitOp struct{ odd api.Collector }

func (o *splitOp) Open(ctx api.Context) (err error) {
	o.odd, err = api.SideOutputOf(ctx, "odd")
	return err
}

func (o *splitOp) ProcessRecord(r api.Record, out api.Collector) error {
	var v struct{ Seq int64 }
	if err := json.Unmarshal(r.Value, &v); err != nil {
		return err
	}
	if v.Seq%2 == 1 {
		o.odd.Collect(r)
		return nil
	}
	out.Collect(r)
	return nil
}

func (o *splitOp) Finish(api.Collector) error { return nil }
func (o *splitOp) Close() error               { return nil }

func splitType() api.OperatorType {
	return api.OperatorType{Name: "split", Kind: api.KindOperator, SideOutputs: []string{"odd", "unread"},
		NewOperator: func(api.Config) (api.Operator, error) { return &splitOp{}, nil }}
}

func seqs(t *testing.T, st *store) []int64 {
	t.Helper()
	var out []int64
	for _, recs := range st.all() {
		for _, r := range recs {
			var v struct{ Seq int64 }
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatal(err)
			}
			out = append(out, v.Seq)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// TestSideOutputEdges: a side output's records reach exactly the edges of
// that side output (two of them: a fan-out, one rebalanced to another
// parallelism), the main output's edge sees none of them, and a declared
// side output without edges drops its records.
func TestSideOutputEdges(t *testing.T) {
	const n = 3000
	mainSt, oddSt, odd2St := newStore(), newStore(), newStore()
	c := newCluster(t, 2, exchange.Options{})
	g := &jobgraphv1.JobGraph{Name: "sides",
		Vertices: []*jobgraphv1.Vertex{
			vertex("gen", "datagen", kSource, 2, map[string]any{"count": n}),
			vertex("split", "split", kOperator, 2, nil),
			vertex("main", "collect-main", kSink, 2, nil),
			vertex("odd", "collect-odd", kSink, 2, nil),
			vertex("odd2", "collect-odd2", kSink, 1, nil),
		},
		Edges: []*jobgraphv1.Edge{
			edge("gen", "split", pForward),
			edge("split", "main", pForward),
			{Source: "split", Target: "odd", Partitioning: pForward, SideOutput: "odd"},
			{Source: "split", Target: "odd2", Partitioning: pRebal, SideOutput: "odd"},
		}}
	reg := testRegistry(splitType(), collectType("collect-main", mainSt, 0), collectType("collect-odd", oddSt, 0), collectType("collect-odd2", odd2St, 0))
	if err := firstError(startJob(t, c, reg, g, jobOptions{}).wait(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	// datagen emits seq 0..n-1 once over its subtasks.
	var wantMain, wantOdd []int64
	for s := range int64(n) {
		if s%2 == 0 {
			wantMain = append(wantMain, s)
		} else {
			wantOdd = append(wantOdd, s)
		}
	}
	for name, c := range map[string]struct {
		st   *store
		want []int64
	}{"main": {mainSt, wantMain}, "odd": {oddSt, wantOdd}, "odd2": {odd2St, wantOdd}} {
		if got := seqs(t, c.st); !equalInts(got, c.want) {
			t.Errorf("%s got %d records (first %v), want %d", name, len(got), got[:min(5, len(got))], len(c.want))
		}
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestUndeclaredSideOutputEdge: a graph reading a side output the type does
// not declare fails at deploy with one line naming it.
func TestUndeclaredSideOutputEdge(t *testing.T) {
	c := newCluster(t, 1, exchange.Options{})
	g := &jobgraphv1.JobGraph{Name: "bad-side",
		Vertices: []*jobgraphv1.Vertex{
			vertex("gen", "datagen", kSource, 1, map[string]any{"count": 10}),
			vertex("split", "split", kOperator, 1, nil),
			vertex("sink", "blackhole", kSink, 1, nil),
		},
		Edges: []*jobgraphv1.Edge{
			edge("gen", "split", pForward),
			{Source: "split", Target: "sink", Partitioning: pForward, SideOutput: "even"},
		}}
	err := firstError(startJob(t, c, testRegistry(splitType()), g, jobOptions{}).wait(t, 30*time.Second))
	if err == nil || !strings.Contains(err.Error(), `carries side output "even" of "split", whose type "split" declares none by that name`) {
		t.Fatalf("error %v, want the undeclared side output named", err)
	}
}
