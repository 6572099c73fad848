package kafka_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/minicluster"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/jobspec"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

const jobBenchRecords = 1_000_000

// BenchmarkJobSourceToBlackhole runs the job kafka (stoppingOffsets:
// latest, so it ends) -> blackhole at parallelism 1 on a mini cluster (the
// real task runtime, with 1 s checkpoints) and, in the same rounds, a raw
// franz-go consumer reading the same 1,000,000 records of the same
// in-process broker; it reports the records/s of both (the job: from
// RUNNING to FINISHED in its history) and their ratio.
func BenchmarkJobSourceToBlackhole(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "in"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < jobBenchRecords; i++ {
		prod.Produce(context.Background(), &kgo.Record{Topic: "in", Key: fmt.Appendf(nil, "k%d", i%1000),
			Value: fmt.Appendf(nil, `{"key":"k%d","seq":%d,"value":%d,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`, i%1000, i, i%997)}, nil)
	}
	if err := prod.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	prod.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := b.TempDir()
	mc, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 1, Slots: 2, DataDir: filepath.Join(dir, "cluster"), Registry: api.Default})
	if err != nil {
		b.Fatal(err)
	}
	defer mc.Close()
	conn, err := grpc.NewClient(mc.JobManagerAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	jm := clusterv1.NewJobManagerServiceClient(conn)

	raw := func() float64 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("in"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		start := time.Now()
		for n := 0; n < jobBenchRecords; {
			cl.PollRecords(ctx, 1024).EachRecord(func(*kgo.Record) { n++ })
		}
		return jobBenchRecords / time.Since(start).Seconds()
	}
	job := func(round int) float64 {
		spec := fmt.Sprintf(`name: kafka-blackhole
parallelism: 1
operators:
  - {id: src, type: kafka, config: {brokers: [%q], topics: [in], stoppingOffsets: latest}}
  - {id: sink, type: blackhole, inputs: [src]}
checkpoints: {interval: 1s, timeout: 30s, storage: %q}
`, addr, "file://"+filepath.ToSlash(filepath.Join(dir, fmt.Sprintf("ck-%d", round))))
		g, err := jobspec.Parse([]byte(spec), "bench.yaml", api.Default, nil)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := jm.SubmitJob(ctx, &clusterv1.SubmitJobRequest{Graph: g})
		if err != nil {
			b.Fatal(err)
		}
		var j *clusterv1.JobDetails
		for {
			r, err := jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: resp.GetJobId()})
			if err != nil {
				b.Fatal(err)
			}
			j = r.GetJob()
			st := j.GetSummary().GetStatus()
			if st == clusterv1.JobStatus_JOB_STATUS_FINISHED {
				break
			}
			if st == clusterv1.JobStatus_JOB_STATUS_FAILED || st == clusterv1.JobStatus_JOB_STATUS_CANCELED || j.GetSummary().GetAttempt() > 1 {
				b.Fatalf("job %s: %s", st, j.GetSummary().GetFailure())
			}
			time.Sleep(10 * time.Millisecond) // polling the job's status
		}
		var running, finished int64
		for _, h := range j.GetHistory() {
			switch h.GetStatus() {
			case clusterv1.JobStatus_JOB_STATUS_RUNNING:
				if running == 0 {
					running = h.GetTimeMs()
				}
			case clusterv1.JobStatus_JOB_STATUS_FINISHED:
				finished = h.GetTimeMs()
			}
		}
		return jobBenchRecords / (time.Duration(finished-running) * time.Millisecond).Seconds()
	}
	var rawSum, jobSum float64
	for i := 0; i < b.N; i++ {
		r, f := raw(), job(i)
		b.Logf("round %d: raw %.0f records/s, job %.0f records/s, ratio %.2f", i, r, f, f/r)
		rawSum, jobSum = rawSum+r, jobSum+f
	}
	b.ReportMetric(rawSum/float64(b.N), "raw-records/s")
	b.ReportMetric(jobSum/float64(b.N), "job-records/s")
	b.ReportMetric(jobSum/rawSum, "ratio")
}
