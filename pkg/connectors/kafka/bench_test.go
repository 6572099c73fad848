package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

// The benchmarks run against one in-process kfake per benchmark, so the
// Flow side and its baseline read or write the same broker in the same
// run; docs/performance.md records the ratios.

const benchRecords = 200_000

func benchBroker(b *testing.B, partitions int32, fill int) string {
	b.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "in", "out"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	if fill > 0 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(5*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		for i := 0; i < fill; i++ {
			// ~100-byte JSON values with a key.
			r := &kgo.Record{Topic: "in", Key: fmt.Appendf(nil, "k%d", i%1000),
				Value: fmt.Appendf(nil, `{"key":"k%d","seq":%d,"value":%d,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`, i%1000, i, i%997)}
			cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
				if err != nil {
					panic(err)
				}
			})
		}
		if err := cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	return addr
}

type countOut struct{ n, bytes int }

func (o *countOut) Collect(r api.Record) { o.n++; o.bytes += len(r.Value) }
func (o *countOut) EmitWatermark(int64)  {}
func (o *countOut) MarkIdle()            {}

// BenchmarkSourceRead: the kafka source (one subtask, format json, so
// every value is validated) emitting into a discarding output, against a
// raw franz-go consumer polling the same topic; records/s of each.
func BenchmarkSourceRead(b *testing.B) {
	addr := benchBroker(b, 4, benchRecords)
	b.Run("raw-franz-go", func(b *testing.B) {
		start := time.Now()
		for i := 0; i < b.N; i++ {
			cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("in"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.FetchIsolationLevel(kgo.ReadCommitted()))
			if err != nil {
				b.Fatal(err)
			}
			n, sum := 0, 0
			for n < benchRecords {
				fs := cl.PollRecords(context.Background(), maxBatch)
				fs.EachRecord(func(r *kgo.Record) { n++; sum += len(r.Value) })
			}
			cl.Close()
		}
		b.ReportMetric(float64(benchRecords*b.N)/time.Since(start).Seconds(), "records/s")
	})
	b.Run("flow-source", func(b *testing.B) {
		typ := SourceType()
		cfg, err := typ.DecodeConfig(map[string]any{"brokers": []any{addr}, "topics": []any{"in"}})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := 0; i < b.N; i++ {
			s, err := typ.NewSource(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Open(testCtx{info: api.TaskInfo{Parallelism: 1}, store: statebackend.NewOperatorStore()}); err != nil {
				b.Fatal(err)
			}
			out := &countOut{}
			for out.n < benchRecords {
				st, err := s.Next(out)
				if err != nil {
					b.Fatal(err)
				}
				if !st.WaitUntil.IsZero() {
					time.Sleep(time.Until(st.WaitUntil)) // as the task's mailbox waits
				}
			}
			s.Close()
		}
		b.ReportMetric(float64(benchRecords*b.N)/time.Since(start).Seconds(), "records/s")
	})
}

// sinkRecords and sinkCheckpointEvery: a checkpoint (snapshot, then its
// completion) every 100000 records, about every 50 ms at the rates
// measured: far more often than a 1 s checkpoint interval, so the per-
// checkpoint cost of a transaction weighs more than in a real job.
const (
	sinkRecords         = 1_000_000
	sinkCheckpointEvery = 100_000
)

// BenchmarkSinkWrite: the kafka sink (one subtask) writing records with a
// checkpoint every sinkCheckpointEvery records, exactly_once against
// at_least_once; records/s of each.
func BenchmarkSinkWrite(b *testing.B) {
	addr := benchBroker(b, 4, 0)
	value := []byte(`{"key":"k1","seq":1,"value":1,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	for _, g := range []string{GuaranteeAtLeastOnce, GuaranteeExactlyOnce} {
		b.Run(g, func(b *testing.B) {
			typ := SinkType()
			cfg, err := typ.DecodeConfig(map[string]any{"brokers": []any{addr}, "topic": "out", "key": "key", "deliveryGuarantee": g,
				"transactionalIdPrefix": "bench-" + g})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			ck := int64(0)
			for i := 0; i < b.N; i++ {
				s, err := typ.NewSink(cfg)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Open(testCtx{info: api.TaskInfo{JobName: "bench", OperatorUID: "sink", Parallelism: 1}, store: statebackend.NewOperatorStore()}); err != nil {
					b.Fatal(err)
				}
				snk := s.(*Sink)
				if err := snk.InitializeState(false); err != nil {
					b.Fatal(err)
				}
				for n := 0; n < sinkRecords; n++ {
					if err := snk.Write(api.Record{Value: value, Timestamp: api.NoTimestamp}); err != nil {
						b.Fatal(err)
					}
					if (n+1)%sinkCheckpointEvery == 0 {
						ck++
						if err := snk.SnapshotState(ck); err != nil {
							b.Fatal(err)
						}
						if err := snk.NotifyCheckpointComplete(ck); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := snk.Finish(); err != nil {
					b.Fatal(err)
				}
				snk.Close()
			}
			b.ReportMetric(float64(sinkRecords*b.N)/time.Since(start).Seconds(), "records/s")
		})
	}
}
