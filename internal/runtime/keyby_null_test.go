package runtime

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/internal/expression"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// userJob: 9 records; m drops "user" from every third one (seq 1, 4, 7) or,
// with null, sets it to JSON null; the sink is keyed by user.
func userJob(onError string, null bool) *jobgraphv1.JobGraph {
	other := `{"seq": seq}`
	if null {
		other = `{"user": nil, "seq": seq}`
	}
	m := vertex("m", "map", kOperator, 1, map[string]any{"expression": `seq % 3 == 1 ? ` + other + ` : {"user": key, "seq": seq}`})
	m.OnError = onError
	sink := vertex("sink", "collect", kSink, 2, nil)
	sink.KeyBy = "user"
	return &jobgraphv1.JobGraph{Name: "keynull",
		Vertices: []*jobgraphv1.Vertex{vertex("gen", "datagen", kSource, 1, map[string]any{"count": 9}), m, sink},
		Edges:    []*jobgraphv1.Edge{edge("gen", "m", pForward), edge("m", "sink", pHash)}}
}

// A keyBy field missing from a record is a record error of the emitting
// operator naming the field and the record, never the key "null".
func TestKeyByMissingFieldIsRecordError(t *testing.T) {
	for _, c := range []struct {
		name string
		null bool
		want string
	}{
		{"missing", false, `operator "m" (subtask 0 of 1): record 2 from the source: keyBy of "sink": expression "user": field "user" is missing in the record (its fields are seq), so the key is null`},
		{"null", true, `operator "m" (subtask 0 of 1): record 2 from the source: keyBy of "sink": expression "user": field "user" is null in the record (its fields are seq, user), so the key is null`},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := newStore()
			cl := newCluster(t, 1, exchange.Options{})
			j := startJob(t, cl, testRegistry(collectType("collect", st, 0)), userJob("", c.null), jobOptions{})
			err := j.wait(t, 30*time.Second)["gen/0"] // m is chained to gen
			if err == nil || isCanceled(err) {
				t.Fatalf("gen/0 returned %v, want a failure; the sink got keys %v", err, keys(st))
			}
			if !errors.Is(err, expression.ErrNullKey) || !errors.Is(err, expression.ErrMissingField) {
				t.Errorf("error does not wrap ErrNullKey and ErrMissingField: %v", err)
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q\ndoes not contain %q on one line", err, c.want)
			}
		})
	}
}

// With onError: skip the records without a key are dropped and counted.
func TestKeyByMissingFieldSkipped(t *testing.T) {
	st := newStore()
	reg := newKeepRegistry()
	cl := newCluster(t, 1, exchange.Options{})
	j := startJob(t, cl, testRegistry(collectType("collect", st, 0)), userJob("skip", false), jobOptions{metrics: reg})
	if err := firstError(j.wait(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys(st) {
		if k == "" || k == "null" {
			t.Fatalf("a record reached the sink with key %q (keys %v)", k, keys(st))
		}
	}
	if n := st.count(); n != 6 {
		t.Fatalf("sink got %d records, want 6", n)
	}
	if got := reg.sum(t, "flow_operator_records_skipped_total", map[string]string{"operator": "m"}); got != 3 {
		t.Fatalf("skipped = %v, want 3", got)
	}
}

// A filter over a misspelt field names the field and the record instead of
// failing with "invalid operation: <nil> > int" and a multi-line snippet.
func TestExpressionErrorNamesMissingField(t *testing.T) {
	f := vertex("f", "filter", kOperator, 1, map[string]any{"condition": "valeu > 3"})
	g := &jobgraphv1.JobGraph{Name: "typo",
		Vertices: []*jobgraphv1.Vertex{vertex("gen", "datagen", kSource, 1, map[string]any{"count": 5}), f, vertex("sink", "blackhole", kSink, 1, nil)},
		Edges:    []*jobgraphv1.Edge{edge("gen", "f", pRebal), edge("f", "sink", pForward)}}
	cl := newCluster(t, 1, exchange.Options{})
	j := startJob(t, cl, testRegistry(), g, jobOptions{})
	err := j.wait(t, 30*time.Second)["f/0"]
	want := `operator "f" (subtask 0 of 1): record 1 from channel 0: expression "valeu > 3": field "valeu" is missing in the record (its fields are key, seq, ts, value): invalid operation: <nil> > int (1:7)`
	if err == nil || err.Error() != want {
		t.Fatalf("error %q\n      want %q", err, want)
	}
	if !errors.Is(err, expression.ErrMissingField) {
		t.Fatalf("error does not wrap ErrMissingField: %v", err)
	}
}

func keys(st *store) []string {
	var out []string
	for _, recs := range st.all() {
		for _, r := range recs {
			out = append(out, string(r.Key))
		}
	}
	return out
}
