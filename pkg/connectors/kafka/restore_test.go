package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
	"github.com/flowrt/flow/pkg/flowtest"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// restoreSpec is kafka (topics, startingOffsets) -> kafka exactly_once
// at parallelism 2.
func restoreSpec(addr, topics, start string) string {
	return fmt.Sprintf(`name: kafka-restore
parallelism: 2
operators:
  - id: src
    type: kafka
    uid: src-v1
    config: {brokers: [%[1]q], topics: [%[2]s], startingOffsets: %[3]q}
  - id: sink
    type: kafka
    uid: sink-v1
    inputs: [src]
    config: {brokers: [%[1]q], topic: out, deliveryGuarantee: exactly_once, transactionTimeout: 1m}
checkpoints: {interval: 200ms, timeout: 10s}
`, addr, topics, start)
}

// produceAt writes {"t":topic,"n":i} for i in [from, to) with timestamp ts
// (Unix ms) to topic, keyed so both partitions get records.
func produceAt(t *testing.T, cl *kgo.Client, topic string, from, to int, ts int64) {
	t.Helper()
	var rs []*kgo.Record
	for i := from; i < to; i++ {
		rs = append(rs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"t":%q,"n":%d}`, topic, i), Timestamp: time.UnixMilli(ts)})
	}
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// committedOut reads every committed record of topic out (read_committed),
// up to the last stable offsets of now.
func committedOut(t *testing.T, addr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListCommittedOffsets(ctx, "out")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("out"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pos := map[int32]int64{}
	done := func() bool {
		for p, o := range ends["out"] {
			if pos[p] < o.Offset {
				return false
			}
		}
		return true
	}
	var out []string
	for !done() {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read out: %v (positions %v, ends %v)", err, pos, ends)
		}
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				out = append(out, string(r.Value))
			}
		})
	}
	return out
}

// awaitOut polls the committed output until it has n records.
func awaitOut(t *testing.T, addr string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := len(committedOut(t, addr))
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the output has %d committed records, want %d", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tally counts the output records per topic and number.
func tally(t *testing.T, lines []string) map[string]map[int]int {
	t.Helper()
	got := map[string]map[int]int{}
	for _, l := range lines {
		var r struct {
			T string `json:"t"`
			N int    `json:"n"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("output %q: %v", l, err)
		}
		if got[r.T] == nil {
			got[r.T] = map[int]int{}
		}
		got[r.T][r.N]++
	}
	return got
}

// wantExactly checks that topic's records in the output are exactly the
// numbers [from, to), each once.
func wantExactly(t *testing.T, got map[string]map[int]int, topic string, from, to int) {
	t.Helper()
	bad := 0
	for n := from; n < to; n++ {
		if got[topic][n] != 1 {
			if bad < 5 {
				t.Errorf("topic %s record %d: in the output %d times, want once", topic, n, got[topic][n])
			}
			bad++
		}
	}
	if len(got[topic]) != to-from {
		t.Errorf("topic %s: %d distinct records in the output, want %d ([%d, %d))", topic, len(got[topic]), to-from, from, to)
	}
}

func offsetsOf(rep *savepoint.SourceReport) map[string]int64 {
	out := map[string]int64{}
	for _, s := range rep.Streams {
		for _, p := range s.Partitions {
			out[s.Name] += p.Offset
		}
	}
	return out
}

// TestRestoreTopicChange runs kafka [a, b] -> kafka exactly_once on a test
// cluster, stops it with a savepoint and checks the Kafka source's restore
// check on that real state: the savepoint's topics, partitions and
// offsets; a spec without b is incompatible (an error naming b) unless
// AllowNonRestoredState, a superset is compatible; the JobManager refuses
// the submit of [a, c] with FailedPrecondition and one line naming the
// operator, b and the flag; with --allow-non-restored-state the job runs:
// a continues exactly (every record once), b's offsets are dropped, c
// starts at startingOffsets (a timestamp between its old and new
// records), and its next savepoint holds a and c only.
func TestRestoreTopicChange(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "a", "b", "c"), kfake.SeedTopics(1, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	addr := kc.ListenAddrs()[0]
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	// Timestamps stay recent: the sink writes them as the Kafka
	// timestamps, and franz-go times a record's delivery out from its
	// timestamp.
	old := time.Now().Add(-10 * time.Second).UnixMilli()
	produceAt(t, prod, "a", 0, 100, old)
	produceAt(t, prod, "b", 0, 60, old)
	produceAt(t, prod, "c", 0, 30, old) // before the new job's startingOffsets: never read

	c := flowtest.Start(t, flowtest.Options{})
	job := c.SubmitSpec(restoreSpec(addr, "a, b", "earliest"))
	awaitOut(t, addr, 160)
	sp := c.Savepoint(job, true)

	ctx := context.Background()
	removed := c.ParseSpec(restoreSpec(addr, "a, c", fmt.Sprint(old+5000)))
	rep, err := savepoint.Check(ctx, removed, api.Default, sp, savepoint.CheckOptions{})
	if !errors.Is(err, savepoint.ErrIncompatible) || rep == nil {
		t.Fatalf("check [a, c]: %v, want ErrIncompatible", err)
	}
	if len(rep.Sources) != 1 || rep.Sources[0].UID != "src-v1" || rep.Sources[0].Type != "kafka" {
		t.Fatalf("sources: %+v, want one for src-v1", rep.Sources)
	}
	src := &rep.Sources[0]
	if got := offsetsOf(src); got["a"] != 100 || got["b"] != 60 || len(got) != 2 {
		t.Fatalf("restored offsets per topic (sum over partitions): %v, want a 100, b 60", got)
	}
	for _, s := range src.Streams {
		if len(s.Partitions) != 2 || s.Known != 2 || s.Partitions[0].Partition != 0 || s.Partitions[1].Partition != 1 {
			t.Fatalf("topic %s: %+v, want partitions 0 and 1 of 2 known", s.Name, s)
		}
	}
	if strings.Join(src.Removed, ",") != "b" || strings.Join(src.Added, ",") != "c" {
		t.Fatalf("removed %v, added %v; want [b], [c]", src.Removed, src.Added)
	}
	f := rep.Find(savepoint.CodeSourceRemoved, "src-v1", "")
	if f == nil || f.Severity != savepoint.SeverityError || !strings.Contains(f.Message, "topic(s) b ") || !strings.Contains(f.Message, "--allow-non-restored-state") {
		t.Fatalf("removed-topic finding: %+v\n%v", f, rep.Findings)
	}
	if rep, err = savepoint.Check(ctx, removed, api.Default, sp, savepoint.CheckOptions{AllowNonRestoredState: true}); err != nil || rep.Find(savepoint.CodeSourceRemoved, "", "").Severity != savepoint.SeverityWarning {
		t.Fatalf("check [a, c] allowing non-restored state: %v", err)
	}
	superset := c.ParseSpec(restoreSpec(addr, "a, b, c", "earliest"))
	if rep, err = savepoint.Check(ctx, superset, api.Default, sp, savepoint.CheckOptions{}); err != nil || !rep.Has(savepoint.CodeSourceAdded, "src-v1", "") {
		t.Fatalf("check [a, b, c] (a superset): %v, want compatible with c added", err)
	}

	// The JobManager refuses the restore without the flag.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = c.Client().SubmitJob(sctx, &clusterv1.SubmitJobRequest{Graph: removed, RestorePath: sp})
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || strings.Contains(st.Message(), "\n") ||
		!strings.Contains(st.Message(), "src-v1") || !strings.Contains(st.Message(), "topic(s) b ") || !strings.Contains(st.Message(), "--allow-non-restored-state") {
		t.Fatalf("submit [a, c] from the savepoint: %v, want FailedPrecondition in one line naming src-v1, b and --allow-non-restored-state", err)
	}

	// With the flag it runs; records produced meanwhile count.
	later := time.Now().UnixMilli()
	produceAt(t, prod, "a", 100, 150, later)
	produceAt(t, prod, "b", 60, 90, later)
	produceAt(t, prod, "c", 30, 50, later)
	job2 := c.SubmitRequest(&clusterv1.SubmitJobRequest{Graph: removed, RestorePath: sp, AllowNonRestoredState: true})
	c.AwaitStatus(job2, flowtest.Running, 30*time.Second)
	awaitOut(t, addr, 160+50+20)
	sp2 := c.Savepoint(job2, true)
	got := tally(t, committedOut(t, addr))
	wantExactly(t, got, "a", 0, 150)
	wantExactly(t, got, "b", 0, 60)
	wantExactly(t, got, "c", 30, 50)
	if t.Failed() {
		keys := []string{}
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Fatalf("output topics %v", keys)
	}
	rep, err = savepoint.Check(ctx, removed, api.Default, sp2, savepoint.CheckOptions{})
	if err != nil {
		t.Fatalf("check [a, c] against the restored job's savepoint: %v", err)
	}
	if got := offsetsOf(&rep.Sources[0]); got["a"] != 150 || got["c"] != 50 || len(rep.Sources[0].Streams) != 2 {
		t.Fatalf("second savepoint's offsets: %v, want a 150, c 50 (b forgotten)", got)
	}
}
