package minicluster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/minicluster"
	"github.com/flowrt/flow/pkg/api"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// eventLog is what the test's sink saw, in order.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf(format, args...))
}

// endingSource emits a record every few milliseconds and ends right after
// its first checkpoint: the barrier and the end of input leave together, so
// the checkpoint completes only after the input ended.
type endingSource struct {
	ending bool
	n      int
}

func (s *endingSource) Open(api.Context) error { return nil }
func (s *endingSource) Next(out api.SourceOutput) (api.SourceStatus, error) {
	if s.ending {
		return api.SourceStatus{End: true}, nil
	}
	s.n++
	out.Collect(api.Record{Value: []byte(fmt.Sprintf(`{"n":%d}`, s.n))})
	return api.SourceStatus{WaitUntil: time.Now().Add(2 * time.Millisecond)}, nil
}
func (s *endingSource) Position() ([]byte, error) {
	s.ending = true
	return []byte(fmt.Sprint(s.n)), nil
}
func (s *endingSource) Restore([]byte) error { return nil }
func (s *endingSource) Close() error         { return nil }

// txSink logs its checkpoint calls, like a two-phase-commit sink.
type txSink struct{ log *eventLog }

func (s *txSink) Open(api.Context) error                  { return nil }
func (s *txSink) Write(api.Record) error                  { return nil }
func (s *txSink) Finish() error                           { s.log.add("finish"); return nil }
func (s *txSink) Close() error                            { s.log.add("close"); return nil }
func (s *txSink) SnapshotState(id int64) error            { s.log.add("snapshot %d", id); return nil }
func (s *txSink) InitializeState(bool) error              { return nil }
func (s *txSink) NotifyCheckpointComplete(id int64) error { s.log.add("complete %d", id); return nil }
func (s *txSink) NotifyCheckpointAborted(id int64) error  { s.log.add("aborted %d", id); return nil }

// A task that ends hears how each checkpoint it took ended before it
// closes: a two-phase-commit sink commits its last transaction.
func TestFinishingTaskHearsItsLastCheckpoint(t *testing.T) {
	log := &eventLog{}
	reg := api.NewRegistry()
	reg.MustRegister(api.OperatorType{Name: "ending", Kind: api.KindSource, NewSource: func(api.Config) (api.Source, error) { return &endingSource{}, nil }})
	reg.MustRegister(api.OperatorType{Name: "tx", Kind: api.KindSink, NewSink: func(api.Config) (api.Sink, error) { return &txSink{log: log}, nil }})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 1, Slots: 2, DataDir: t.TempDir(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := grpc.NewClient(c.JobManagerAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := clusterv1.NewJobManagerServiceClient(conn)
	g := &jobgraphv1.JobGraph{
		Name: "final-notify", Parallelism: 1, MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{
			{Id: "src", Type: "ending", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SOURCE},
			{Id: "sink", Type: "tx", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SINK},
		},
		// A rebalance edge: the sink is its own task, downstream of the
		// source's end of input.
		Edges:       []*jobgraphv1.Edge{{Source: "src", Target: "sink", Partitioning: jobgraphv1.Partitioning_PARTITIONING_REBALANCE}},
		Checkpoints: []byte(`{"interval":100000000}`),
	}
	resp, err := client.SubmitJob(ctx, &clusterv1.SubmitJobRequest{Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := client.WatchJob(ctx, &clusterv1.WatchJobRequest{JobId: resp.GetJobId()})
	if err != nil {
		t.Fatal(err)
	}
	var last *clusterv1.JobStatusEvent
	for {
		ev, err := stream.Recv()
		if err != nil {
			break
		}
		last = ev
	}
	if last.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		t.Fatalf("job ended %v: %s", last.GetSummary().GetStatus(), last.GetSummary().GetFailure())
	}
	log.mu.Lock()
	events := strings.Join(log.events, ", ")
	log.mu.Unlock()
	// Every snapshot the sink took is completed or aborted before close.
	var open []string
	for _, e := range log.events {
		switch {
		case strings.HasPrefix(e, "snapshot "):
			open = append(open, strings.TrimPrefix(e, "snapshot "))
		case strings.HasPrefix(e, "complete "):
			open = nil // a completion subsumes earlier checkpoints
		case strings.HasPrefix(e, "aborted "):
			open = slices.DeleteFunc(open, func(id string) bool { return id == strings.TrimPrefix(e, "aborted ") })
		case e == "close":
			if len(open) > 0 {
				t.Fatalf("the sink closed before hearing how checkpoint(s) %v ended: %s", open, events)
			}
		}
	}
	if !strings.Contains(events, "snapshot ") {
		t.Fatalf("the sink took no snapshot: %s", events)
	}
}
