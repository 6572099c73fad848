package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

type collectOut struct {
	recs []api.Record
	wms  []int64
	idle int
}

func (o *collectOut) Collect(r api.Record) {
	o.recs = append(o.recs, api.Record{Key: append([]byte(nil), r.Key...), Value: append([]byte(nil), r.Value...), Timestamp: r.Timestamp})
}
func (o *collectOut) EmitWatermark(ts int64) { o.wms = append(o.wms, ts) }
func (o *collectOut) MarkIdle()              { o.idle++ }

type srcAttempt struct {
	t      *testing.T
	srcs   []*Source
	stores []*statebackend.OperatorStore
	outs   []*collectOut
}

// snap is what a checkpoint holds of the source: every subtask's splits
// (in subtask order) and operator state.
type snap struct {
	splits [][]byte
	state  [][]statebackend.OperatorState
}

func startSources(t *testing.T, addr string, par int, restore *snap, extra map[string]any) *srcAttempt {
	t.Helper()
	typ := SourceType()
	raw := map[string]any{"brokers": []any{addr}, "topics": []any{"in"}}
	for k, v := range extra {
		raw[k] = v
	}
	cfg, err := typ.DecodeConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	var shares [][]statebackend.OperatorState
	if restore != nil {
		if shares, err = statebackend.Redistribute(restore.state, par); err != nil {
			t.Fatal(err)
		}
	}
	a := &srcAttempt{t: t}
	for i := 0; i < par; i++ {
		store := statebackend.NewOperatorStore()
		if shares != nil {
			if err := store.Restore(shares[i]); err != nil {
				t.Fatal(err)
			}
		}
		s, err := typ.NewSource(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(testCtx{info: api.TaskInfo{JobName: "j", OperatorUID: "src", SubtaskIndex: i, Parallelism: par}, store: store}); err != nil {
			t.Fatal(err)
		}
		if restore != nil {
			if err := s.(api.SplitSource).RestoreSplits(api.AssignSplits(restore.splits, i, par)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.(api.CheckpointedFunction).InitializeState(restore != nil); err != nil {
			t.Fatalf("subtask %d: initialize state: %v", i, err)
		}
		a.srcs, a.stores, a.outs = append(a.srcs, s.(*Source)), append(a.stores, store), append(a.outs, &collectOut{})
	}
	t.Cleanup(a.close)
	return a
}

func (a *srcAttempt) close() {
	for _, s := range a.srcs {
		s.Close()
	}
	a.srcs = nil
}

// run calls Next on every subtask until n records were emitted in all
// (or, n < 0, every subtask ended).
func (a *srcAttempt) run(n int) {
	a.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	ended := make([]bool, len(a.srcs))
	for {
		total, allEnded := 0, true
		for i, s := range a.srcs {
			if !ended[i] {
				st, err := s.Next(a.outs[i])
				if err != nil {
					a.t.Fatalf("subtask %d: %v", i, err)
				}
				ended[i] = st.End
			}
			total += len(a.outs[i].recs)
			allEnded = allEnded && ended[i]
		}
		if (n >= 0 && total >= n) || (n < 0 && allEnded) {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("timed out: %d records emitted, want %d", total, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (a *srcAttempt) snapshot(id int64) *snap {
	a.t.Helper()
	sn := &snap{}
	for i, s := range a.srcs {
		sp, err := s.Splits()
		if err != nil {
			a.t.Fatal(err)
		}
		sn.splits = append(sn.splits, sp...)
		if err := s.SnapshotState(id); err != nil {
			a.t.Fatal(err)
		}
		sn.state = append(sn.state, a.stores[i].Snapshot())
	}
	return sn
}

// seen counts the "n" values of the emitted records.
func (a *srcAttempt) seen(into map[int]int) {
	for _, o := range a.outs {
		for _, r := range o.recs {
			var v struct{ N int }
			if err := json.Unmarshal(r.Value, &v); err != nil {
				a.t.Fatalf("record %q: %v", r.Value, err)
			}
			into[v.N]++
		}
	}
}

func checkExactlyOnce(t *testing.T, seen map[int]int, n int) {
	t.Helper()
	bad := 0
	for i := 0; i < n; i++ {
		if seen[i] != 1 {
			if bad < 5 {
				t.Errorf("record %d seen %d times", i, seen[i])
			}
			bad++
		}
	}
	if len(seen) != n || bad > 0 {
		t.Fatalf("%d distinct records, want %d; %d wrong", len(seen), n, bad)
	}
}

// TestSourceRescaleAndNewPartitions reads a 4-partition topic with 2
// subtasks, checkpoints mid-way (the snapshot is taken while records are
// still buffered in the client), adds 2 partitions, and restores with 3
// subtasks: every record is read exactly once, the new partitions' from
// their earliest offset.
func TestSourceRescaleAndNewPartitions(t *testing.T) {
	addr := broker(t, map[string]int32{"in": 4})
	produce(t, addr, "in", 0, 2000, 50)
	a := startSources(t, addr, 2, nil, nil)
	a.run(700)
	sn := a.snapshot(1)
	first := map[int]int{}
	a.seen(first)
	a.close()

	cl := newClient(t, addr)
	if _, err := kadm.NewClient(cl).CreatePartitions(context.Background(), 2, "in"); err != nil {
		t.Fatal(err)
	}
	produce(t, addr, "in", 2000, 3000, 50) // spread over 6 partitions
	b := startSources(t, addr, 3, sn, nil)
	b.run(3000 - len(countOf(first)))
	// Nothing more arrives.
	for i := 0; i < 20; i++ {
		b.run(0)
	}
	all := first
	b.seen(all)
	checkExactlyOnce(t, all, 3000)
	// The Kafka key is the record's key; the Kafka timestamp its time.
	r := b.outs[0].recs[0]
	if len(r.Key) == 0 || r.Key[0] != 'k' || r.Timestamp <= 0 {
		t.Fatalf("record %q key %q timestamp %d: want the Kafka key and timestamp", r.Value, r.Key, r.Timestamp)
	}
}

func countOf(m map[int]int) []int {
	var out []int
	for k, n := range m {
		for i := 0; i < n; i++ {
			out = append(out, k)
		}
	}
	return out
}

func TestSourceBoundedAndMetadata(t *testing.T) {
	addr := broker(t, map[string]int32{"in": 3})
	produce(t, addr, "in", 0, 300, 7)
	a := startSources(t, addr, 2, nil, map[string]any{"stoppingOffsets": "latest", "metadata": true})
	produce(t, addr, "in", 300, 400, 7) // after the start: not read
	a.run(-1)
	seen := map[int]int{}
	a.seen(seen)
	checkExactlyOnce(t, seen, 300)
	var v struct {
		Topic     string `json:"_topic"`
		Partition *int   `json:"_partition"`
		Offset    *int64 `json:"_offset"`
	}
	if err := json.Unmarshal(a.outs[0].recs[0].Value, &v); err != nil || v.Topic != "in" || v.Partition == nil || v.Offset == nil {
		t.Fatalf("metadata fields of %q: %+v %v", a.outs[0].recs[0].Value, v, err)
	}
}

func TestSourceRecordError(t *testing.T) {
	addr := broker(t, map[string]int32{"in": 1})
	produce(t, addr, "in", 0, 3, 1)
	cl := newClient(t, addr)
	if err := cl.ProduceSync(context.Background(), &kgoRecord{Topic: "in", Value: []byte("not json")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produce(t, addr, "in", 3, 5, 1)
	a := startSources(t, addr, 1, nil, nil)
	out := &collectOut{}
	var recErr error
	deadline := time.Now().Add(10 * time.Second)
	for len(out.recs) < 5 && time.Now().Before(deadline) {
		if _, err := a.srcs[0].Next(out); err != nil {
			var re *RecordError
			if !errors.As(err, &re) || re.Topic != "in" || re.Partition != 0 || re.Offset != 3 {
				t.Fatalf("error %v: want a record error at in/0/3", err)
			}
			recErr = err
		}
		time.Sleep(time.Millisecond)
	}
	if recErr == nil || len(out.recs) != 5 {
		t.Fatalf("record error %v, %d records after it (want the error and the 5 good records)", recErr, len(out.recs))
	}
	var re interface{ RecordError() bool }
	if !errors.As(recErr, &re) || !re.RecordError() {
		t.Fatalf("%v is not a record error for onError", recErr)
	}
}

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// TestSourcePartitionWatermarks: the watermark is the minimum over the
// partitions; a partition without records holds it back until idleTimeout,
// then it is left out.
func TestSourcePartitionWatermarks(t *testing.T) {
	addr := broker(t, map[string]int32{"in": 2})
	cl := newClient(t, addr)
	base := time.UnixMilli(1_000_000)
	for i, p := range []int32{0, 0, 0} {
		r := &kgoRecord{Topic: "in", Partition: p, Value: fmt.Appendf(nil, `{"n":%d}`, i), Timestamp: base.Add(time.Duration(i) * time.Second)}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	typ := SourceType()
	cfg, err := typ.DecodeConfig(map[string]any{"brokers": []any{addr}, "topics": []any{"in"}, "watermarks": true, "outOfOrderness": "500ms", "idleTimeout": "10s"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := typ.NewSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Now()}
	if err := s.Open(testCtx{info: api.TaskInfo{SubtaskIndex: 0, Parallelism: 1}, store: statebackend.NewOperatorStore(), clock: clock}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := &collectOut{}
	deadline := time.Now().Add(10 * time.Second)
	for len(out.recs) < 3 && time.Now().Before(deadline) {
		if _, err := s.Next(out); err != nil {
			t.Fatal(err)
		}
	}
	if len(out.recs) != 3 || len(out.wms) != 0 {
		t.Fatalf("%d records, watermarks %v: want 3 records and no watermark while partition 1 is empty and not idle", len(out.recs), out.wms)
	}
	clock.now = clock.now.Add(11 * time.Second) // partition 1 idle; partition 0 too (no record since)
	if _, err := s.Next(out); err != nil {
		t.Fatal(err)
	}
	if out.idle != 1 {
		t.Fatalf("idle %d: want the subtask idle once both partitions are", out.idle)
	}
	r := &kgoRecord{Topic: "in", Partition: 0, Value: []byte(`{"n":3}`), Timestamp: base.Add(5 * time.Second)}
	if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for len(out.wms) == 0 && time.Now().Before(deadline) {
		if _, err := s.Next(out); err != nil {
			t.Fatal(err)
		}
	}
	if want := base.Add(5*time.Second).UnixMilli() - 500; len(out.wms) != 1 || out.wms[0] != want {
		t.Fatalf("watermarks %v: want [%d] (partition 1 idle, partition 0 at 5s - 500ms)", out.wms, want)
	}
}

type kgoRecord = kgo.Record

// TestSourceBrokerGone: a cluster that goes away mid-job fails the source
// after brokerTimeout instead of leaving it idle forever.
func TestSourceBrokerGone(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	produce(t, addr, "in", 0, 10, 1)
	a := startSources(t, addr, 1, nil, map[string]any{"brokerTimeout": "1s"})
	a.run(10)
	c.Close()
	start := time.Now()
	for {
		_, err := a.srcs[0].Next(a.outs[0])
		if err != nil {
			if !strings.Contains(err.Error(), "no broker of") {
				t.Fatalf("error %v: want the broker timeout", err)
			}
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatal("the source did not fail 15s after the broker went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSourceGroupCommitOnComplete: the group gets the offsets of a
// checkpoint only when it completes, and a later start with
// startingOffsets committed continues there.
func TestSourceGroupCommitOnComplete(t *testing.T) {
	addr := broker(t, map[string]int32{"in": 2})
	produce(t, addr, "in", 0, 100, 10)
	a := startSources(t, addr, 1, nil, map[string]any{"group": "g1"})
	a.run(100)
	if err := a.srcs[0].SnapshotState(1); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(newClient(t, addr))
	committed := func() int64 {
		resp, err := adm.FetchOffsets(context.Background(), "g1")
		if errors.Is(err, kerr.GroupIDNotFound) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		resp.Each(func(o kadm.OffsetResponse) { sum += max(o.At, 0) })
		return sum
	}
	if n := committed(); n != 0 {
		t.Fatalf("%d offsets committed before the checkpoint completed", n)
	}
	if err := a.srcs[0].NotifyCheckpointComplete(1); err != nil {
		t.Fatal(err)
	}
	if n := committed(); n != 100 {
		t.Fatalf("committed offsets sum to %d after the checkpoint, want 100", n)
	}
	a.close()
	produce(t, addr, "in", 100, 130, 10)
	b := startSources(t, addr, 1, nil, map[string]any{"group": "g1", "startingOffsets": "committed"})
	b.run(30)
	for i := 0; i < 20; i++ {
		b.run(0)
	}
	seen := map[int]int{}
	b.seen(seen)
	if len(seen) != 30 || seen[100] != 1 || seen[129] != 1 {
		t.Fatalf("startingOffsets committed read %d records (%v...), want exactly 100..129", len(seen), seen)
	}
}
