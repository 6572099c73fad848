package runtime

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// tagOp is a two-input operator that tags each record with its input and
// checks that no record is behind the operator's watermark: the sources
// emit in timestamp order, so each input's records are at or after that
// input's watermark, and the operator's watermark, the minimum over both
// inputs, never passes a record still to come from the slower one.
type tagOp struct {
	wm      int64
	mu      *sync.Mutex
	badWM   *[]string
	scratch []byte
}

func (o *tagOp) Open(api.Context) error {
	o.wm = api.NoTimestamp
	return nil
}

func (o *tagOp) emit(in int, r api.Record, out api.Collector) error {
	if r.Timestamp < o.wm {
		o.mu.Lock()
		*o.badWM = append(*o.badWM, fmt.Sprintf("input %d record at %d behind watermark %d", in, r.Timestamp, o.wm))
		o.mu.Unlock()
	}
	o.scratch = fmt.Appendf(o.scratch[:0], `{"in":%d,"v":%s}`, in, r.Value)
	out.Collect(api.Record{Value: o.scratch, Timestamp: r.Timestamp})
	return nil
}

func (o *tagOp) ProcessRecord(r api.Record, out api.Collector) error  { return o.emit(1, r, out) }
func (o *tagOp) ProcessRecord2(r api.Record, out api.Collector) error { return o.emit(2, r, out) }

func (o *tagOp) ProcessWatermark(ts int64, _ api.Collector) error {
	o.wm = ts
	return nil
}

func (o *tagOp) Finish(api.Collector) error { return nil }
func (o *tagOp) Close() error               { return nil }

func tagType(mu *sync.Mutex, bad *[]string) api.OperatorType {
	return api.OperatorType{Name: "tag", Kind: api.KindOperator, Inputs: 2, NewOperator: func(api.Config) (api.Operator, error) {
		return &tagOp{mu: mu, badWM: bad}, nil
	}}
}

// TestTwoInputs: the first input's records reach ProcessRecord and the
// second's ProcessRecord2, on every subtask (both broadcast); the
// operator's watermark never passes the slower input.
func TestTwoInputs(t *testing.T) {
	st := newStore()
	var mu sync.Mutex
	var bad []string
	c := newCluster(t, 2, exchange.Options{})
	wm := &jobgraphv1.WatermarkStrategy{Timestamp: "ts", IntervalMs: 5}
	a := vertex("a", "datagen", kSource, 2, map[string]any{"count": 3000, "rate": 6000})
	b := vertex("b", "datagen", kSource, 1, map[string]any{"count": 600, "rate": 1000})
	a.Watermarks, b.Watermarks = wm, wm
	g := &jobgraphv1.JobGraph{Name: "two-inputs",
		Vertices: []*jobgraphv1.Vertex{a, b,
			vertex("tag", "tag", kOperator, 3, nil),
			vertex("sink", "collect", kSink, 3, nil),
		},
		Edges: []*jobgraphv1.Edge{
			edge("a", "tag", pBcast), // each subtask sees all of both inputs: the watermark check holds per subtask
			{Source: "b", Target: "tag", Partitioning: pBcast, Input: 1},
			edge("tag", "sink", pForward),
		}}
	j := startJob(t, c, testRegistry(collectType("collect", st, 0), tagType(&mu, &bad)), g, jobOptions{})
	if err := firstError(j.wait(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	for sub, recs := range st.all() {
		first, second := 0, 0
		for _, r := range recs {
			switch {
			case strings.HasPrefix(string(r.Value), `{"in":1,`):
				first++
			case strings.HasPrefix(string(r.Value), `{"in":2,`):
				second++
			default:
				t.Fatalf("untagged record %s", r.Value)
			}
		}
		if first != 3000 || second != 600 {
			t.Errorf("subtask %d got %d records of the first input and %d of the second, want 3000 and 600", sub, first, second)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("%d records were behind the watermark, e.g. %s", len(bad), bad[0])
	}
}

// TestSecondInputToOneInputType: a graph feeding a second input to a
// single-input type fails at deploy with a line naming the fix.
func TestSecondInputToOneInputType(t *testing.T) {
	c := newCluster(t, 1, exchange.Options{})
	g := &jobgraphv1.JobGraph{Name: "bad",
		Vertices: []*jobgraphv1.Vertex{
			vertex("a", "datagen", kSource, 1, map[string]any{"count": 10}),
			vertex("b", "datagen", kSource, 1, map[string]any{"count": 10}),
			vertex("f", "filter", kOperator, 1, map[string]any{"condition": "true"}),
			vertex("sink", "blackhole", kSink, 1, nil),
		},
		Edges: []*jobgraphv1.Edge{
			edge("a", "f", pRebal),
			{Source: "b", Target: "f", Partitioning: pRebal, Input: 1},
			edge("f", "sink", pForward),
		}}
	j := startJob(t, c, testRegistry(), g, jobOptions{})
	err := firstError(j.wait(t, 30*time.Second))
	if err == nil || !strings.Contains(err.Error(), `input "b" is its second input, but type "filter" has one input`) {
		t.Fatalf("error %v, want one naming the second input and the one-input type", err)
	}
}

// keyedTouchOp writes keyed state from whichever input a record came from.
type keyedTouchOp struct {
	v *api.ValueState[int64]
}

func (o *keyedTouchOp) Open(ctx api.Context) error {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	o.v, err = api.GetValueState(store, api.ValueStateDescriptor[int64]{Name: "n", Codec: api.Int64Codec()})
	return err
}
func (o *keyedTouchOp) ProcessRecord(api.Record, api.Collector) error  { return o.v.Update(1) }
func (o *keyedTouchOp) ProcessRecord2(api.Record, api.Collector) error { return o.v.Update(2) }
func (o *keyedTouchOp) Finish(api.Collector) error                     { return nil }
func (o *keyedTouchOp) Close() error                                   { return nil }

// TestBroadcastInputHasNoKey: a keyed two-input operator that writes keyed
// state for a record of its broadcast input fails naming the state, rather
// than storing it under an empty key in some key group.
func TestBroadcastInputHasNoKey(t *testing.T) {
	c := newCluster(t, 1, exchange.Options{})
	touch := vertex("touch", "touch", kOperator, 2, nil)
	touch.KeyBy = "key"
	g := &jobgraphv1.JobGraph{Name: "bcast-key",
		Vertices: []*jobgraphv1.Vertex{
			vertex("a", "datagen", kSource, 1, map[string]any{"count": 100}),
			vertex("b", "datagen", kSource, 1, map[string]any{"count": 100}),
			touch,
			vertex("sink", "blackhole", kSink, 2, nil),
		},
		Edges: []*jobgraphv1.Edge{
			edge("a", "touch", pHash),
			{Source: "b", Target: "touch", Partitioning: pBcast, Input: 1},
			edge("touch", "sink", pForward),
		}}
	reg := testRegistry(api.OperatorType{Name: "touch", Kind: api.KindOperator, Keyed: true, Inputs: 2,
		NewOperator: func(api.Config) (api.Operator, error) { return &keyedTouchOp{}, nil }})
	err := firstError(startJob(t, c, reg, g, jobOptions{}).wait(t, 30*time.Second))
	if err == nil || !strings.Contains(err.Error(), `state "n", key "": key group -1 not in`) {
		t.Fatalf("error %v, want the keyed state access from the broadcast input refused", err)
	}
}
