package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

type testCtx struct {
	info  api.TaskInfo
	store *statebackend.OperatorStore
	clock api.Clock
}

func (c testCtx) Info() api.TaskInfo             { return c.info }
func (c testCtx) Logger() *slog.Logger           { return slog.New(slog.DiscardHandler) }
func (c testCtx) Metrics() prometheus.Registerer { return prometheus.NewRegistry() }
func (c testCtx) Clock() api.Clock {
	if c.clock == nil {
		return wallClock{}
	}
	return c.clock
}
func (c testCtx) Done() <-chan struct{}                      { return nil }
func (c testCtx) DataDir() string                            { return "" }
func (c testCtx) OperatorStateStore() api.OperatorStateStore { return c.store }

// broker starts an in-process kfake with the given topics (name ->
// partitions).
func broker(t *testing.T, topics map[string]int32) string {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	for name, n := range topics {
		opts = append(opts, kfake.SeedTopics(n, name))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce writes records {"n":i} with key k<i mod keys> to topic.
func produce(t *testing.T, addr, topic string, from, to, keys int) {
	t.Helper()
	cl := newClient(t, addr)
	var rs []*kgo.Record
	for i := from; i < to; i++ {
		rs = append(rs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%keys), Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// readCommitted reads every committed record of topic (read_committed),
// waiting until the last stable offset reaches the high watermark of
// every partition, so an open transaction fails the read.
func readCommitted(t *testing.T, addr, topic string) []string {
	t.Helper()
	cl := newClient(t, addr)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ends kadm.ListedOffsets
	deadline := time.Now().Add(10 * time.Second)
	for {
		lso, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		hw, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		same := true
		hw.Each(func(o kadm.ListedOffset) { same = same && lso[o.Topic][o.Partition].Offset == o.Offset })
		if same {
			ends = hw
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: an open transaction holds read_committed consumers back: last stable %v, high watermark %v", topic, lso, hw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords())
	var out []string
	pos := map[int32]int64{}
	done := func() bool {
		for p, o := range ends[topic] {
			if pos[p] < o.Offset {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := c.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read %s: %v (positions %v, ends %v)", topic, err, pos, ends)
		}
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				out = append(out, string(r.Value))
			}
		})
	}
	sort.Strings(out)
	return out
}

type sinkAttempt struct {
	t      *testing.T
	sinks  []*Sink
	stores []*statebackend.OperatorStore
}

func startSinks(t *testing.T, addr string, par int, restore [][]statebackend.OperatorState, extra map[string]any) *sinkAttempt {
	t.Helper()
	typ := SinkType()
	raw := map[string]any{"brokers": []any{addr}, "topic": "out", "deliveryGuarantee": "exactly_once", "transactionalIdPrefix": "job-sink"}
	for k, v := range extra {
		raw[k] = v
	}
	cfg, err := typ.DecodeConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	var shares [][]statebackend.OperatorState
	if restore != nil {
		if shares, err = statebackend.Redistribute(restore, par); err != nil {
			t.Fatal(err)
		}
	}
	a := &sinkAttempt{t: t}
	for i := 0; i < par; i++ {
		store := statebackend.NewOperatorStore()
		if shares != nil {
			if err := store.Restore(shares[i]); err != nil {
				t.Fatal(err)
			}
		}
		s, err := typ.NewSink(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(testCtx{info: api.TaskInfo{JobName: "j", OperatorUID: "sink", SubtaskIndex: i, Parallelism: par}, store: store}); err != nil {
			t.Fatal(err)
		}
		if err := s.(api.CheckpointedFunction).InitializeState(restore != nil); err != nil {
			t.Fatalf("subtask %d: initialize state: %v", i, err)
		}
		a.sinks, a.stores = append(a.sinks, s.(*Sink)), append(a.stores, store)
	}
	t.Cleanup(a.close)
	return a
}

func (a *sinkAttempt) write(sub int, vals ...string) {
	a.t.Helper()
	for _, v := range vals {
		if err := a.sinks[sub].Write(api.Record{Value: []byte(v), Timestamp: api.NoTimestamp}); err != nil {
			a.t.Fatal(err)
		}
	}
}

func (a *sinkAttempt) snapshot(id int64) [][]statebackend.OperatorState {
	a.t.Helper()
	var out [][]statebackend.OperatorState
	for i, s := range a.sinks {
		if err := s.SnapshotState(id); err != nil {
			a.t.Fatalf("subtask %d: snapshot %d: %v", i, id, err)
		}
		out = append(out, a.stores[i].Snapshot())
	}
	return out
}

func (a *sinkAttempt) notify(id int64) {
	a.t.Helper()
	for i, s := range a.sinks {
		if err := s.NotifyCheckpointComplete(id); err != nil {
			a.t.Fatalf("subtask %d: notify %d: %v", i, id, err)
		}
	}
}

func (a *sinkAttempt) close() {
	for _, s := range a.sinks {
		s.Close()
	}
	a.sinks = nil
}

func vals(prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf(`{"v":"%s%03d"}`, prefix, i))
	}
	return out
}

func sorted(ss ...[]string) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s...)
	}
	sort.Strings(out)
	return out
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s: got %d records, want %d\ngot:  %.400v\nwant: %.400v", what, len(got), len(want), got, want)
	}
}

// TestSinkExactlyOnceCrashAndRescale crashes a 3-subtask exactly_once
// sink after checkpoint 1 was pre-committed (not committed) and while
// checkpoint 2's and open transactions are in flight, then restores
// checkpoint 1 at parallelism 1: the restore commits checkpoint 1's
// transactions of every old subtask and aborts every other open
// transaction of the prefix, so a read_committed reader sees exactly
// checkpoint 1's records and is not held back.
func TestSinkExactlyOnceCrashAndRescale(t *testing.T) {
	addr := broker(t, map[string]int32{"out": 2})
	a := startSinks(t, addr, 3, nil, nil)
	c1 := [][]string{vals("a", 10), vals("b", 7), vals("c", 5)}
	for i, v := range c1 {
		a.write(i, v...)
	}
	cp1 := a.snapshot(1)
	// Checkpoint 2 pre-committed on two subtasks, then more records in
	// open transactions; no notification reaches anyone.
	a.write(0, vals("d", 4)...)
	a.write(1, vals("e", 4)...)
	a.snapshot(2)
	a.write(2, vals("f", 3)...)
	a.write(0, vals("g", 3)...)
	for _, s := range a.sinks {
		if s.cur != nil {
			if err := s.flush(s.cur.cl); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.close() // the crash: nothing is committed or aborted

	b := startSinks(t, addr, 1, cp1, nil)
	equal(t, "after the restore", readCommitted(t, addr, "out"), sorted(c1...))
	b.write(0, vals("h", 6)...)
	b.snapshot(3)
	b.notify(3)
	equal(t, "after checkpoint 3", readCommitted(t, addr, "out"), sorted(append(c1, vals("h", 6))...))
}

// TestSinkExactlyOnceCommitOnNotify: nothing is visible before the
// checkpoint completes; a lost notification is covered by the next one;
// a restore of a checkpoint whose transactions were committed already
// commits nothing twice.
func TestSinkExactlyOnceCommitOnNotify(t *testing.T) {
	addr := broker(t, map[string]int32{"out": 1})
	a := startSinks(t, addr, 1, nil, nil)
	a.write(0, vals("a", 5)...)
	a.snapshot(1)
	a.write(0, vals("b", 5)...)
	cp2 := a.snapshot(2)
	a.notify(2) // the notification of 1 was lost
	want := sorted(vals("a", 5), vals("b", 5))
	equal(t, "after notify 2", readCommitted(t, addr, "out"), want)
	a.write(0, vals("c", 5)...)
	a.close()
	startSinks(t, addr, 2, cp2, nil)
	equal(t, "after the restore of checkpoint 2", readCommitted(t, addr, "out"), want)
}

func TestSinkAtLeastOnceFlushesOnBarrier(t *testing.T) {
	addr := broker(t, map[string]int32{"out": 1})
	a := startSinks(t, addr, 1, nil, map[string]any{"deliveryGuarantee": "at_least_once", "key": "v"})
	a.write(0, vals("a", 50)...)
	a.snapshot(1)
	// Right after the snapshot returns, every record is on the broker.
	cl := newClient(t, addr)
	hw, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), "out")
	if err != nil {
		t.Fatal(err)
	}
	if got := hw["out"][0].Offset; got != 50 {
		t.Fatalf("high watermark after the snapshot: %d, want 50", got)
	}
}

func TestSubmitChecks(t *testing.T) {
	addr := broker(t, map[string]int32{"in": 1})
	src := SourceType()
	cfg, err := src.DecodeConfig(map[string]any{"brokers": []any{addr}, "topics": []any{"nope"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.NewSource(cfg); !errors.Is(err, ErrNoTopic) || !strings.Contains(err.Error(), `"nope"`) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("missing topic: %v", err)
	}
	cfg, err = src.DecodeConfig(map[string]any{"brokers": []any{"127.0.0.1:1"}, "topics": []any{"in"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.NewSource(cfg); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("unreachable broker: %v", err)
	}
	snk := SinkType()
	cfg, err = snk.DecodeConfig(map[string]any{"brokers": []any{addr}, "topic": "absent"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snk.NewSink(cfg); !errors.Is(err, ErrNoTopic) {
		t.Fatalf("sink, missing topic: %v", err)
	}
	cfg, err = snk.DecodeConfig(map[string]any{"brokers": []any{addr}, "topic": "in", "deliveryGuarantee": "exactly_once", "transactionTimeout": "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snk.NewSink(cfg); !errors.Is(err, ErrTransactionTimeout) {
		t.Fatalf("transactionTimeout 1h: %v", err)
	}
}

// TestSinkOldEventTimes: records whose event time lies long in the past
// (a replay, a backfill) are delivered under every guarantee and keep
// their event time as the Kafka timestamp. franz-go's record delivery
// timeout counts from the record's timestamp, so a sink bounding delivery
// with it fails every such record at once.
func TestSinkOldEventTimes(t *testing.T) {
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	for _, g := range []string{"none", "at_least_once", "exactly_once"} {
		t.Run(g, func(t *testing.T) {
			addr := broker(t, map[string]int32{"out": 1})
			a := startSinks(t, addr, 1, nil, map[string]any{"deliveryGuarantee": g})
			for i := range 20 {
				if err := a.sinks[0].Write(api.Record{Value: fmt.Appendf(nil, `{"v":%d}`, i), Timestamp: old + int64(i)}); err != nil {
					t.Fatal(err)
				}
			}
			s := a.sinks[0]
			cl := s.cl
			if s.cur != nil {
				cl = s.cur.cl
			}
			if err := s.flush(cl); err != nil {
				t.Fatalf("flush: %v", err)
			}
			a.snapshot(1)
			a.notify(1)
			c := newClient(t, addr, kgo.ConsumeTopics("out"), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n := 0
			for n < 20 {
				fs := c.PollFetches(ctx)
				if err := fs.Err0(); err != nil {
					t.Fatalf("read back after %d records: %v", n, err)
				}
				fs.EachRecord(func(r *kgo.Record) {
					if got, want := r.Timestamp.UnixMilli(), old+int64(n); got != want {
						t.Errorf("record %d: Kafka timestamp %d, want the event time %d", n, got, want)
					}
					n++
				})
			}
		})
	}
}

// TestSinkRepeatedRestoreOfCommittedCheckpoint: a job restoring the same
// checkpoint again and again (it fails before the next one completes)
// commits that checkpoint's transactions again each time; they were
// committed already, so nothing counts as lost and nothing is duplicated.
func TestSinkRepeatedRestoreOfCommittedCheckpoint(t *testing.T) {
	addr := broker(t, map[string]int32{"out": 1})
	a := startSinks(t, addr, 1, nil, nil)
	a.write(0, vals("a", 5)...)
	cp1 := a.snapshot(1)
	a.notify(1)
	a.close()
	for i := range 4 {
		b := startSinks(t, addr, 1, cp1, nil)
		if n := testutil.ToFloat64(b.sinks[0].metrics.lost); n != 0 {
			t.Fatalf("restore %d: %v transactions counted lost, want 0", i, n)
		}
		if n := testutil.ToFloat64(b.sinks[0].metrics.committed); n != 1 {
			t.Fatalf("restore %d: %v transactions committed, want 1", i, n)
		}
		if i < 3 { // a checkpoint pre-committed that never completes
			b.write(0, vals("x", 3)...)
			b.snapshot(2)
		}
		b.close()
	}
	equal(t, "after the restores", readCommitted(t, addr, "out"), sorted(vals("a", 5)))
}
