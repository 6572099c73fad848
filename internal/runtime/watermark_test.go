package runtime

import (
	"testing"
	"time"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// expectWM waits for the next watermark the recorder saw.
func expectWM(t *testing.T, st *store, want int64) {
	t.Helper()
	select {
	case got := <-st.wms:
		if got != want {
			t.Fatalf("watermark %d, want %d", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no watermark, want %d", want)
	}
}

// expectNoWM checks no watermark arrives for a while.
func expectNoWM(t *testing.T, st *store) {
	t.Helper()
	select {
	case got := <-st.wms:
		t.Fatalf("unexpected watermark %d", got)
	case <-time.After(100 * time.Millisecond):
	}
}

// twoSourceJob: sources a and b (p=1 each, on different managers) feed the
// watermark recorder w (p=1) which feeds a collect sink.
func twoSourceJob(t *testing.T, a, b api.OperatorType, aWM *jobgraphv1.WatermarkStrategy) (*store, *job) {
	st := newStore()
	c := newCluster(t, 2, exchange.Options{})
	va := vertex("a", a.Name, kSource, 1, nil)
	va.Watermarks = aWM
	g := &jobgraphv1.JobGraph{Name: "wm",
		Vertices: []*jobgraphv1.Vertex{va, vertex("b", b.Name, kSource, 1, nil),
			vertex("w", "wm", kOperator, 1, nil), vertex("sink", "collect", kSink, 1, nil)},
		Edges: []*jobgraphv1.Edge{edge("a", "w", pRebal), edge("b", "w", pRebal), edge("w", "sink", pForward)}}
	reg := testRegistry(a, b, wmType("wm", st), collectType("collect", st, 0))
	j := startJob(t, c, reg, g, jobOptions{flushInterval: 5 * time.Millisecond, assign: func(task string, _ int) int {
		if task == "b" {
			return 1
		}
		return 0
	}})
	return st, j
}

func TestWatermarkMinOverInputsAndIdleness(t *testing.T) {
	ca, cb := make(chan cmd, 16), make(chan cmd, 16)
	st, j := twoSourceJob(t, ctlType("ctlA", []chan cmd{ca}), ctlType("ctlB", []chan cmd{cb}), nil)
	ca <- cmd{wm: 100}
	expectNoWM(t, st) // b has not said anything yet
	cb <- cmd{wm: 50}
	expectWM(t, st, 50)
	cb <- cmd{wm: 200}
	expectWM(t, st, 100)
	ca <- cmd{idle: true}
	expectWM(t, st, 200) // a idle: only b counts
	ca <- cmd{wm: 150}   // a active again, behind: the watermark never goes back
	expectNoWM(t, st)
	ca <- cmd{wm: 300}
	expectNoWM(t, st)    // b (200) holds it back
	cb <- cmd{end: true} // an ended input no longer holds back
	expectWM(t, st, 300)
	ca <- cmd{wm: 400}
	expectWM(t, st, 400)
	ca <- cmd{end: true}
	expectWM(t, st, api.MaxWatermark)
	if err := firstError(j.wait(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestWatermarkStrategyAndIdleTimeout(t *testing.T) {
	ca, cb := make(chan cmd, 16), make(chan cmd, 16)
	strategy := &jobgraphv1.WatermarkStrategy{Timestamp: "t * 10", OutOfOrdernessMs: 5, IntervalMs: 10, IdleTimeoutMs: 300}
	st, j := twoSourceJob(t, ctlType("ctlA", []chan cmd{ca}), ctlType("ctlB", []chan cmd{cb}), strategy)
	cb <- cmd{wm: 5000}
	expectNoWM(t, st)
	ca <- cmd{rec: &api.Record{Value: []byte(`{"t":100}`), Timestamp: api.NoTimestamp}}
	expectWM(t, st, 100*10-5-1) // periodic watermark of a, bounded out-of-orderness
	// a stays silent: after the idle timeout only b counts.
	expectWM(t, st, 5000)
	ca <- cmd{end: true}
	cb <- cmd{end: true}
	expectWM(t, st, api.MaxWatermark)
	if err := firstError(j.wait(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	recs := st.all()[0]
	if len(recs) != 1 || recs[0].Timestamp != 1000 {
		t.Fatalf("records = %v, want one with timestamp 1000 from the timestamp expression", recs)
	}
}
