package runtime

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/jobgraph"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

type genRec struct {
	Key   string `json:"key"`
	Seq   int64  `json:"seq"`
	Value int64  `json:"value"`
}

func decodeGen(t *testing.T, b []byte) genRec {
	t.Helper()
	var r genRec
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return r
}

func TestChainedForward(t *testing.T) {
	st := newStore()
	c := newCluster(t, 1, exchange.Options{})
	g := &jobgraphv1.JobGraph{Name: "chain",
		Vertices: []*jobgraphv1.Vertex{
			vertex("gen", "datagen", kSource, 2, map[string]any{"count": 1000}),
			vertex("f", "filter", kOperator, 2, map[string]any{"condition": "value >= 500"}),
			vertex("sink", "collect", kSink, 2, nil),
		},
		Edges: []*jobgraphv1.Edge{edge("gen", "f", pForward), edge("f", "sink", pForward)}}
	plan, err := jobgraph.BuildPlan(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Tasks) != 1 || len(plan.Tasks[0].Operators) != 3 {
		t.Fatalf("plan = %+v, want one chained task", plan.Tasks)
	}
	j := startJob(t, c, testRegistry(collectType("collect", st, 0)), g, jobOptions{})
	if len(j.deployments) != 2 {
		t.Fatalf("%d deployments, want 2", len(j.deployments))
	}
	if err := firstError(j.wait(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	total := 0
	for sub, recs := range st.all() {
		for _, r := range recs {
			gr := decodeGen(t, r.Value)
			if gr.Value < 500 {
				t.Fatalf("filter let %s through", r.Value)
			}
			if int(gr.Seq%2) != sub {
				t.Fatalf("record seq %d reached subtask %d: forward chain must keep it in subtask %d", gr.Seq, sub, gr.Seq%2)
			}
			if r.Timestamp != gr.Seq {
				t.Fatalf("timestamp %d, want %d", r.Timestamp, gr.Seq)
			}
			total++
		}
	}
	if total == 0 || total == 1000 {
		t.Fatalf("filter kept %d of 1000 records", total)
	}
}

func TestBroadcastAndRebalance(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    jobgraphv1.Partitioning
	}{{"broadcast", pBcast}, {"rebalance", pRebal}} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore()
			c := newCluster(t, 2, exchange.Options{})
			g := &jobgraphv1.JobGraph{Name: tc.name,
				Vertices: []*jobgraphv1.Vertex{
					vertex("gen", "datagen", kSource, 1, map[string]any{"count": 300}),
					vertex("sink", "collect", kSink, 3, nil),
				},
				Edges: []*jobgraphv1.Edge{edge("gen", "sink", tc.p)}}
			j := startJob(t, c, testRegistry(collectType("collect", st, 0)), g, jobOptions{})
			if err := firstError(j.wait(t, 30*time.Second)); err != nil {
				t.Fatal(err)
			}
			all := st.all()
			seen := map[int64]int{}
			for sub := 0; sub < 3; sub++ {
				recs := all[sub]
				switch tc.p {
				case pBcast:
					if len(recs) != 300 {
						t.Errorf("subtask %d got %d records, want all 300", sub, len(recs))
					}
				case pRebal:
					if len(recs) != 100 {
						t.Errorf("subtask %d got %d records, want 100 (round robin)", sub, len(recs))
					}
				}
				for i, r := range recs {
					gr := decodeGen(t, r.Value)
					seen[gr.Seq]++
					if i > 0 && decodeGen(t, recs[i-1].Value).Seq >= gr.Seq {
						t.Fatalf("subtask %d: records out of order", sub)
					}
				}
			}
			want := 1
			if tc.p == pBcast {
				want = 3
			}
			for n := int64(0); n < 300; n++ {
				if seen[n] != want {
					t.Fatalf("record %d seen %d times, want %d", n, seen[n], want)
				}
			}
		})
	}
}

func TestSelectAndMap(t *testing.T) {
	st := newStore()
	c := newCluster(t, 1, exchange.Options{})
	g := &jobgraphv1.JobGraph{Name: "select",
		Vertices: []*jobgraphv1.Vertex{
			vertex("gen", "datagen", kSource, 1, map[string]any{"count": 10}),
			vertex("sel", "select", kOperator, 1, map[string]any{"fields": map[string]string{"k": "key", "double": "seq * 2", "big": "value > 500"}}),
			vertex("m", "map", kOperator, 1, map[string]any{"expression": "double"}),
			vertex("sink", "collect", kSink, 1, nil),
		},
		Edges: []*jobgraphv1.Edge{edge("gen", "sel", pForward), edge("sel", "m", pForward), edge("m", "sink", pForward)}}
	j := startJob(t, c, testRegistry(collectType("collect", st, 0)), g, jobOptions{})
	if err := firstError(j.wait(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	recs := st.all()[0]
	if len(recs) != 10 {
		t.Fatalf("got %d records", len(recs))
	}
	var vals []string
	for _, r := range recs {
		vals = append(vals, string(r.Value))
	}
	if got := strings.Join(vals, ","); got != "0,2,4,6,8,10,12,14,16,18" {
		t.Fatalf("values = %s", got)
	}
}
