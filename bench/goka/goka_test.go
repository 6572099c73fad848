package goka

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/minicluster"
	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin" // the built-in operators and connectors (count, kafka)
	"github.com/flowrt/flow/pkg/jobspec"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

const partitions = 4

var (
	benchRecords = flag.Int("goka.records", 1_000_000, "records of BenchmarkKeyedCount's input")
	benchKeys    = flag.Int("goka.keys", 10_000, "distinct keys of BenchmarkKeyedCount's input")
)

// broker starts an in-process kfake broker with the input topic and
// produces n keyed JSON records over keys keys into it.
func broker(tb testing.TB, n, keys int) string {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "in"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	defer prod.Close()
	for i := 0; i < n; i++ {
		k := i % keys
		prod.Produce(context.Background(), &kgo.Record{Topic: "in", Key: fmt.Appendf(nil, "k%d", k),
			Value: fmt.Appendf(nil, `{"key":"k%d","seq":%d,"value":%d}`, k, i, i%997)}, nil)
	}
	if err := prod.Flush(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return addr
}

// createTopics creates the topics with the input's partition count.
func createTopics(ctx context.Context, tb testing.TB, addr string, names ...string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	rs, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, nil, names...)
	if err == nil {
		err = rs.Error()
	}
	if err != nil {
		tb.Fatalf("creating topics %v: %v", names, err)
	}
}

// want is the final count of every key of the input broker produced.
func want(n, keys int) map[string]int64 {
	w := make(map[string]int64, keys)
	for i := 0; i < n; i++ {
		w["k"+strconv.Itoa(i%keys)]++
	}
	return w
}

// readCounts reads topic (read_committed) until, for every key of w, the
// largest count seen equals w's, and returns those counts; it fails the
// test if a count passes w's or 30 s go by first (it is called once the
// writer has finished, so everything is in the topic already). parse turns
// a record into (key, count).
func readCounts(ctx context.Context, tb testing.TB, addr, topic string, w map[string]int64, parse func(*kgo.Record) (string, int64, error)) map[string]int64 {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	got := map[string]int64{}
	final := 0
	for final < len(w) {
		fs := cl.PollRecords(ctx, 4096)
		if err := ctx.Err(); err != nil {
			tb.Fatalf("reading %s: %v (%d of %d keys at their final count)", topic, err, final, len(w))
		}
		fs.EachRecord(func(r *kgo.Record) {
			k, n, err := parse(r)
			if err != nil {
				tb.Fatalf("%s record %q: %v", topic, r.Value, err)
			}
			if n > w[k] {
				tb.Fatalf("%s: key %q counted %d, more than its %d records", topic, k, n, w[k])
			}
			if n > got[k] {
				if n == w[k] {
					final++
				}
				got[k] = n
			}
		})
	}
	return got
}

func parseFlow(r *kgo.Record) (string, int64, error) {
	var v struct {
		Key   string `json:"key"`
		Count int64  `json:"count"`
	}
	err := json.Unmarshal(r.Value, &v)
	return v.Key, v.Count, err
}

func parseGoka(r *kgo.Record) (string, int64, error) {
	n, err := strconv.ParseInt(string(r.Value), 10, 64)
	return string(r.Key), n, err
}

// cpu is the process's user+system CPU time so far.
func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// result of one run: wall time of the processing, CPU seconds of the whole
// process (broker included) over the same span.
type result struct {
	wall, cpu time.Duration
}

// runFlow runs kafka -> count(keyBy _key) -> kafka (exactly_once, 1 s
// checkpoints) at parallelism 2 on a mini cluster until the job finishes
// (stoppingOffsets: latest), then reads the output to the final counts.
func runFlow(ctx context.Context, tb testing.TB, addr, out string, n int, w map[string]int64) (result, map[string]int64) {
	createTopics(ctx, tb, addr, out)
	dir := tb.TempDir()
	mc, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 1, Slots: 4, DataDir: filepath.Join(dir, "cluster"), Registry: api.Default})
	if err != nil {
		tb.Fatal(err)
	}
	defer mc.Close()
	conn, err := grpc.NewClient(mc.JobManagerAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	jm := clusterv1.NewJobManagerServiceClient(conn)
	spec := fmt.Sprintf(`name: kafka-count
parallelism: 2
operators:
  - {id: src, type: kafka, config: {brokers: [%[1]q], topics: [in], stoppingOffsets: latest}}
  - {id: count, type: count, inputs: [src], keyBy: _key}
  - id: sink
    type: kafka
    inputs: [count]
    config: {brokers: [%[1]q], topic: %[2]q, key: key, deliveryGuarantee: exactly_once, transactionTimeout: 2m}
checkpoints: {interval: 1s, timeout: 1m, storage: %[3]q}
`, addr, out, "file://"+filepath.ToSlash(filepath.Join(dir, "ck")))
	g, err := jobspec.Parse([]byte(spec), "bench.yaml", api.Default, nil)
	if err != nil {
		tb.Fatal(err)
	}
	c0, t0 := cpu(), time.Now()
	resp, err := jm.SubmitJob(ctx, &clusterv1.SubmitJobRequest{Graph: g})
	if err != nil {
		tb.Fatal(err)
	}
	id := resp.GetJobId()
	defer jm.CancelJob(context.WithoutCancel(ctx), &clusterv1.CancelJobRequest{JobId: id}) //nolint:errcheck // a finished job needs no cancel
	for {
		r, err := jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
		if err != nil {
			tb.Fatal(err)
		}
		s := r.GetJob().GetSummary()
		if s.GetStatus() == clusterv1.JobStatus_JOB_STATUS_FINISHED {
			break
		}
		if s.GetStatus() == clusterv1.JobStatus_JOB_STATUS_FAILED || s.GetStatus() == clusterv1.JobStatus_JOB_STATUS_CANCELED || s.GetAttempt() > 1 {
			tb.Fatalf("flow job %s (attempt %d): %s", s.GetStatus(), s.GetAttempt(), s.GetFailure())
		}
		time.Sleep(20 * time.Millisecond) // polling the job's status
	}
	got := readCounts(ctx, tb, addr, out, w, parseFlow)
	return result{time.Since(t0), cpu() - c0}, got
}

// runGoka runs a Goka processor (group table persisted with codec.Int64,
// in-memory storage) that counts per key and emits the running count to out,
// until it has processed all n records, then stops it and reads the output
// to the final counts.
func runGoka(ctx context.Context, tb testing.TB, addr, group, out string, n int, w map[string]int64) (result, map[string]int64) {
	// The group table and the output, up front; Goka checks them.
	createTopics(ctx, tb, addr, string(goka.GroupTable(goka.Group(group))), out)
	cfg := goka.DefaultConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	goka.ReplaceGlobalConfig(cfg)
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication, tmc.Stream.Replication = 1, 1
	var processed atomic.Int64
	all := make(chan struct{})
	g := goka.DefineGroup(goka.Group(group),
		goka.Input("in", new(codec.Bytes), func(gc goka.Context, _ any) {
			var c int64
			if v := gc.Value(); v != nil {
				c = v.(int64)
			}
			c++
			gc.SetValue(c)
			gc.Emit(goka.Stream(out), gc.Key(), c)
			if processed.Add(1) == int64(n) {
				close(all)
			}
		}),
		goka.Persist(new(codec.Int64)),
		goka.Output(goka.Stream(out), new(codec.Int64)),
	)
	c0, t0 := cpu(), time.Now()
	p, err := goka.NewProcessor([]string{addr}, g,
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithTopicManagerConfig(tmc)),
		goka.WithStorageBuilder(storage.MemoryBuilder()))
	if err != nil {
		tb.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	var runErr error
	ran := make(chan struct{})
	go func() { runErr = p.Run(pctx); close(ran) }()
	defer func() { stop(); <-ran }() // on every path, failures included
	select {
	case <-all:
	case <-ran:
		tb.Fatalf("goka processor ended before it processed %d records: %v", n, runErr)
	case <-ctx.Done():
		tb.Fatalf("goka: %v after %d of %d records", ctx.Err(), processed.Load(), n)
	}
	stop()
	<-ran
	if runErr != nil {
		tb.Fatalf("goka processor: %v", runErr)
	}
	got := readCounts(ctx, tb, addr, out, w, parseGoka)
	return result{time.Since(t0), cpu() - c0}, got
}

func agree(tb testing.TB, name string, got, w map[string]int64) {
	if len(got) != len(w) {
		tb.Fatalf("%s: %d keys, want %d", name, len(got), len(w))
	}
	for k, n := range w {
		if got[k] != n {
			tb.Fatalf("%s: key %s counted %d, want %d", name, k, got[k], n)
		}
	}
}

// TestKeyedCountAgree runs both on a small input and checks that each
// ends with the exact count of every key.
func TestKeyedCountAgree(t *testing.T) {
	const n, keys = 20_000, 100
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr := broker(t, n, keys)
	w := want(n, keys)
	_, f := runFlow(ctx, t, addr, "flow-out", n, w)
	agree(t, "flow", f, w)
	_, g := runGoka(ctx, t, addr, "goka-count", "goka-out", n, w)
	agree(t, "goka", g, w)
}

// BenchmarkKeyedCount runs, in each round and on the same broker and
// input (by default 1,000,000 records over 10,000 keys, 4 partitions;
// -goka.records, -goka.keys), Flow's job and
// the Goka processor, and reports the records/s of each, their CPU seconds
// and the ratio Flow/Goka.
func BenchmarkKeyedCount(b *testing.B) {
	n, keys := *benchRecords, *benchKeys
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	addr := broker(b, n, keys)
	w := want(n, keys)
	var fr, gr float64
	for i := 0; i < b.N; i++ {
		f, fc := runFlow(ctx, b, addr, fmt.Sprintf("flow-out-%d", i), n, w)
		agree(b, "flow", fc, w)
		g, gc := runGoka(ctx, b, addr, fmt.Sprintf("goka-count-%d", i), fmt.Sprintf("goka-out-%d", i), n, w)
		agree(b, "goka", gc, w)
		fs, gs := float64(n)/f.wall.Seconds(), float64(n)/g.wall.Seconds()
		b.Logf("round %d: flow %.0f records/s (wall %.2fs, cpu %.2fs), goka %.0f records/s (wall %.2fs, cpu %.2fs), ratio %.2f",
			i, fs, f.wall.Seconds(), f.cpu.Seconds(), gs, g.wall.Seconds(), g.cpu.Seconds(), fs/gs)
		fr, gr = fr+fs, gr+gs
	}
	b.ReportMetric(fr/float64(b.N), "flow-records/s")
	b.ReportMetric(gr/float64(b.N), "goka-records/s")
	b.ReportMetric(fr/gr, "ratio")
}
