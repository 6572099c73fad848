package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/flowrt/flow/internal/exchange"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/connectors/blackhole"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/connectors/file"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/operators/transform"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cluster is a set of exchange Managers standing for TaskManagers, each with
// a real gRPC server on a loopback port.
type cluster struct {
	managers []*exchange.Manager
	addrs    []string
}

func newCluster(t testing.TB, n int, opts exchange.Options) *cluster {
	t.Helper()
	c := &cluster{}
	for i := 0; i < n; i++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		o := opts
		o.SelfAddress = lis.Addr().String()
		o.Logger = slog.New(slog.DiscardHandler)
		m, err := exchange.NewManager(o)
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		m.RegisterService(s)
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Serve(lis) }()
		t.Cleanup(func() {
			_ = m.Close()
			s.Stop()
			<-done
		})
		c.managers = append(c.managers, m)
		c.addrs = append(c.addrs, lis.Addr().String())
	}
	return c
}

// testRegistry holds the built-ins plus test operator types.
func testRegistry(extra ...api.OperatorType) *api.Registry {
	r := api.NewRegistry()
	r.MustRegister(datagen.Type())
	r.MustRegister(file.SourceType())
	r.MustRegister(file.SinkType())
	r.MustRegister(blackhole.Type())
	for _, t := range transform.Types() {
		r.MustRegister(t)
	}
	for _, t := range extra {
		r.MustRegister(t)
	}
	return r
}

// job is a running job: one RunTask goroutine per subtask.
type job struct {
	deployments []*clusterv1.TaskDeployment
	wg          sync.WaitGroup
	mu          sync.Mutex
	errs        map[string]error
	cancel      context.CancelFunc
}

type jobOptions struct {
	assign        func(task string, subtask int) int // manager index; default subtask % managers
	flushInterval time.Duration
	metrics       prometheus.Registerer
	// jobID and attempt name the deployments (default "job-1", 0).
	jobID   string
	attempt int32
	// env, when set, completes each subtask's deployment and TaskEnv
	// (control mailbox, checkpoint responder, restore).
	env func(d *clusterv1.TaskDeployment, env *TaskEnv)
	// done, when set, is called with each subtask's result.
	done func(d *clusterv1.TaskDeployment, err error)
	// noFailFast keeps the other subtasks running when one fails.
	noFailFast bool
	// deploy, when set, returns the deployments to run (a job master's)
	// instead of building them; started is told of the running job.
	deploy  func(addrs []string) []*clusterv1.TaskDeployment
	started func(j *job)
}

func startJob(t testing.TB, c *cluster, reg *api.Registry, g *jobgraphv1.JobGraph, o jobOptions) *job {
	t.Helper()
	plan, err := jobgraph.BuildPlan(g)
	if err != nil {
		t.Fatal(err)
	}
	assign := o.assign
	if assign == nil {
		assign = func(_ string, s int) int { return s % len(c.managers) }
	}
	jobID := o.jobID
	if jobID == "" {
		jobID = "job-1"
	}
	ds := jobgraph.BuildDeployments(jobID, o.attempt, g, plan, func(task string, s int) string { return c.addrs[assign(task, s)] })
	if o.deploy != nil {
		ds = o.deploy(c.addrs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{deployments: ds, errs: map[string]error{}, cancel: cancel}
	for _, d := range ds {
		env := TaskEnv{
			Registry: reg, Exchange: c.managers[assign(d.GetId().GetTask(), int(d.GetId().GetSubtask()))],
			DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), FlushInterval: o.flushInterval, Metrics: o.metrics,
		}
		if o.env != nil {
			o.env(d, &env)
		}
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			err := RunTask(ctx, d, env)
			j.mu.Lock()
			j.errs[fmt.Sprintf("%s/%d", d.GetId().GetTask(), d.GetId().GetSubtask())] = err
			j.mu.Unlock()
			if o.done != nil {
				o.done(d, err)
			}
			if err != nil && !o.noFailFast {
				cancel() // like a JobManager failing the job
			}
		}()
	}
	t.Cleanup(func() { cancel(); j.wg.Wait() })
	if o.started != nil {
		o.started(j)
	}
	return j
}

// wait waits for every subtask and returns their results by "task/subtask".
func (j *job) wait(t testing.TB, timeout time.Duration) map[string]error {
	t.Helper()
	done := make(chan struct{})
	go func() { j.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		j.cancel()
		<-done
		t.Fatalf("job did not finish within %s", timeout)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.errs
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// firstError returns a non-cancellation error, else any error.
func firstError(errs map[string]error) error {
	var any error
	for _, e := range errs {
		if e != nil && !isCanceled(e) {
			return e
		}
		if e != nil {
			any = e
		}
	}
	return any
}

func vertex(id, typ string, kind jobgraphv1.VertexKind, par int32, cfg map[string]any) *jobgraphv1.Vertex {
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return &jobgraphv1.Vertex{Id: id, Type: typ, Kind: kind, Parallelism: par, Config: b}
}

const (
	kSource   = jobgraphv1.VertexKind_VERTEX_KIND_SOURCE
	kOperator = jobgraphv1.VertexKind_VERTEX_KIND_OPERATOR
	kSink     = jobgraphv1.VertexKind_VERTEX_KIND_SINK
	pForward  = jobgraphv1.Partitioning_PARTITIONING_FORWARD
	pHash     = jobgraphv1.Partitioning_PARTITIONING_HASH
	pRebal    = jobgraphv1.Partitioning_PARTITIONING_REBALANCE
	pBcast    = jobgraphv1.Partitioning_PARTITIONING_BROADCAST
)

func edge(a, b string, p jobgraphv1.Partitioning) *jobgraphv1.Edge {
	return &jobgraphv1.Edge{Source: a, Target: b, Partitioning: p}
}
