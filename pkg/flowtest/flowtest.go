// Package flowtest runs a whole Flow cluster inside a Go test, in the
// spirit of temporal's temporaltest: a JobManager and TaskManagers with the
// test's operator registry, talking real gRPC on loopback ports — the same
// components the jobmanager and taskmanager binaries run.
//
//	c := flowtest.Start(t, flowtest.Options{Registry: reg})
//	id := c.SubmitSpec(spec)
//	c.AwaitStatus(id, flowtest.Finished, time.Minute)
//
// What it promises:
//   - Start returns once every TaskManager has registered; the cluster is
//     stopped by t.Cleanup (or earlier by Stop), and every goroutine it
//     started has ended when Stop returns, so goleak.VerifyTestMain holds
//     in the user's package.
//   - SubmitSpec parses the spec on the JobManager, exactly as `flowctl
//     run` does; Submit takes a graph (for example from pkg/jobbuilder).
//   - Savepoint, StopTaskManager and AddTaskManager drive upgrades,
//     rescaling and failover in-process (for SIGKILLed processes, test the
//     built binaries: see examples/sdk/e2e).
//   - Methods that fail call t.Fatalf: call them from the test's
//     goroutine.
//   - The cluster's data (job store, checkpoints, savepoints, TaskManager
//     state) lives under t.TempDir() unless Options.DataDir is set.
package flowtest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/minicluster"
	"github.com/flowrt/flow/pkg/api"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Job statuses to await.
const (
	Running  = clusterv1.JobStatus_JOB_STATUS_RUNNING
	Finished = clusterv1.JobStatus_JOB_STATUS_FINISHED
	Failed   = clusterv1.JobStatus_JOB_STATUS_FAILED
	Canceled = clusterv1.JobStatus_JOB_STATUS_CANCELED
)

// Options configure a test cluster. Zero values take the documented
// defaults.
type Options struct {
	// Registry of operator types the JobManager and TaskManagers know.
	// Default api.Default.
	Registry *api.Registry
	// TaskManagers to start. Default 1.
	TaskManagers int
	// Slots per TaskManager. Default 4.
	Slots int
	// DataDir holds the cluster's data. Default t.TempDir().
	DataDir string
	// HeartbeatTimeout and SlotTimeout as for the JobManager (defaults 10s
	// and 60s).
	HeartbeatTimeout time.Duration
	SlotTimeout      time.Duration
	// LogLevel of the components' logs, written to t.Log. Default
	// slog.LevelWarn.
	LogLevel slog.Leveler
	// StartTimeout bounds Start. Default 30s.
	StartTimeout time.Duration
}

// Cluster is a running test cluster.
type Cluster struct {
	t       testing.TB
	mc      *minicluster.Cluster
	conn    *grpc.ClientConn
	client  clusterv1.JobManagerServiceClient
	mu      sync.Mutex             // guards metrics (AddTaskManager appends)
	metrics []*prometheus.Registry // the JobManager's, then each TaskManager's
	log     *testLog
	once    sync.Once
}

// Start starts a cluster for the test and registers its Stop with
// t.Cleanup.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Registry == nil {
		opts.Registry = api.Default
	}
	if opts.TaskManagers <= 0 {
		opts.TaskManagers = 1
	}
	if opts.Slots <= 0 {
		opts.Slots = 4
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.LogLevel == nil {
		opts.LogLevel = slog.LevelWarn
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	c := &Cluster{t: t, log: &testLog{t: t}}
	c.metrics = make([]*prometheus.Registry, 1+opts.TaskManagers)
	for i := range c.metrics {
		c.metrics[i] = prometheus.NewRegistry()
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()
	mc, err := minicluster.Start(ctx, minicluster.Options{
		TaskManagers: opts.TaskManagers, Slots: opts.Slots, DataDir: opts.DataDir, Registry: opts.Registry,
		Logger:           slog.New(slog.NewTextHandler(c.log, &slog.HandlerOptions{Level: opts.LogLevel})),
		HeartbeatTimeout: opts.HeartbeatTimeout, SlotTimeout: opts.SlotTimeout,
		JobManagerMetrics:  c.metrics[0],
		TaskManagerMetrics: c.taskManagerMetrics,
	})
	if err != nil {
		c.log.close()
		t.Fatalf("flowtest: start the cluster: %v", err)
	}
	c.mc = mc
	c.conn, err = grpc.NewClient(mc.JobManagerAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		_ = mc.Close()
		c.log.close()
		t.Fatalf("flowtest: connect to the JobManager: %v", err)
	}
	c.client = clusterv1.NewJobManagerServiceClient(c.conn)
	t.Cleanup(c.Stop)
	return c
}

// Address is the JobManager's RPC address (for flowctl --jobmanager).
func (c *Cluster) Address() string { return c.mc.JobManagerAddress() }

// DataDir is the directory holding the cluster's data.
func (c *Cluster) DataDir() string { return c.mc.DataDir() }

// Client is a JobManagerService client for calls this package does not
// wrap (savepoints, checkpoint history, ...). Stop closes it.
func (c *Cluster) Client() clusterv1.JobManagerServiceClient { return c.client }

// rpcTimeout bounds each call these helpers make.
const rpcTimeout = 30 * time.Second

// SubmitSpec has the JobManager parse the YAML spec with the cluster's
// operator types (as `flowctl run` does), submits it and returns the job
// id. sets are --set style PATH=VALUE overrides. A spec with problems
// fails the test with every problem.
func (c *Cluster) SubmitSpec(spec string, sets ...string) string {
	c.t.Helper()
	return c.Submit(c.ParseSpec(spec, sets...))
}

// ParseSpec has the JobManager parse the YAML spec and returns its graph.
func (c *Cluster) ParseSpec(spec string, sets ...string) *jobgraphv1.JobGraph {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	resp, err := c.client.ValidateSpec(ctx, &clusterv1.ValidateSpecRequest{Spec: []byte(spec), Filename: "spec", Sets: sets})
	if err != nil {
		c.t.Fatalf("flowtest: validate the spec: %v", err)
	}
	if p := resp.GetProblems(); len(p) > 0 {
		c.t.Fatalf("flowtest: the spec has problems:\n%s", strings.Join(p, "\n"))
	}
	for _, w := range resp.GetWarnings() {
		c.t.Logf("flowtest: warning: %s", w)
	}
	return resp.GetGraph()
}

// Submit submits a job graph and returns the job id.
func (c *Cluster) Submit(graph *jobgraphv1.JobGraph) string {
	c.t.Helper()
	return c.SubmitRequest(&clusterv1.SubmitJobRequest{Graph: graph})
}

// SubmitRequest submits with every option of the request (a restore path,
// allow non-restored state) and returns the job id.
func (c *Cluster) SubmitRequest(req *clusterv1.SubmitJobRequest) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	resp, err := c.client.SubmitJob(ctx, req)
	if err != nil {
		c.t.Fatalf("flowtest: submit job %q: %v", req.GetGraph().GetName(), err)
	}
	return resp.GetJobId()
}

// Job returns the job's details now.
func (c *Cluster) Job(id string) *clusterv1.JobDetails {
	c.t.Helper()
	d, err := c.job(id)
	if err != nil {
		c.t.Fatalf("flowtest: get job %s: %v", id, err)
	}
	return d
}

func (c *Cluster) job(id string) (*clusterv1.JobDetails, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	resp, err := c.client.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
	return resp.GetJob(), err
}

// AwaitStatus waits until the job has status want and returns its details.
// It fails the test when the job reaches another terminal status (FINISHED,
// FAILED, CANCELED) instead, or when timeout passes.
func (c *Cluster) AwaitStatus(id string, want clusterv1.JobStatus, timeout time.Duration) *clusterv1.JobDetails {
	c.t.Helper()
	d, err := c.await(id, want, timeout)
	if err != nil {
		c.t.Fatalf("flowtest: %v", err)
	}
	return d
}

func (c *Cluster) await(id string, want clusterv1.JobStatus, timeout time.Duration) (*clusterv1.JobDetails, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stream, err := c.client.WatchJob(ctx, &clusterv1.WatchJobRequest{JobId: id})
	if err != nil {
		return nil, fmt.Errorf("watch job %s: %w", id, err)
	}
	last := clusterv1.JobStatus_JOB_STATUS_UNSPECIFIED
	for {
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("job %s did not reach %s within %v (it is %s)", id, statusName(want), timeout, statusName(last))
			}
			// The stream ended (terminal status): read the job once more.
			d, gerr := c.job(id)
			if gerr == nil && d.GetSummary().GetStatus() == want {
				return d, nil
			}
			return nil, fmt.Errorf("job %s: watch ended in %s, want %s: %v", id, statusName(last), statusName(want), err)
		}
		s := ev.GetSummary()
		last = s.GetStatus()
		if last == want {
			d, err := c.job(id)
			if err != nil {
				return nil, fmt.Errorf("get job %s: %w", id, err)
			}
			return d, nil
		}
		if terminal(last) {
			msg := ""
			if f := s.GetFailure(); f != "" {
				msg = ": " + f
			}
			return nil, fmt.Errorf("job %s ended %s, want %s%s", id, statusName(last), statusName(want), msg)
		}
	}
}

// Cancel cancels the job and waits until it is CANCELED.
func (c *Cluster) Cancel(id string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	if _, err := c.client.CancelJob(ctx, &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		c.t.Fatalf("flowtest: cancel job %s: %v", id, err)
	}
	c.AwaitStatus(id, Canceled, rpcTimeout)
}

// Savepoint takes a savepoint of the running job into the cluster's
// savepoint directory and returns its URL; with stop, the job then stops
// (FINISHED) and Savepoint returns once it has. Restore from it with
// SubmitRequest's RestorePath, possibly at other parallelisms.
func (c *Cluster) Savepoint(id string, stop bool) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*rpcTimeout)
	defer cancel()
	stream, err := c.client.TriggerSavepoint(ctx, &clusterv1.TriggerSavepointRequest{JobId: id, Stop: stop})
	if err != nil {
		c.t.Fatalf("flowtest: savepoint of job %s: %v", id, err)
	}
	path := ""
	for path == "" {
		p, err := stream.Recv()
		if err != nil {
			c.t.Fatalf("flowtest: savepoint of job %s: %v", id, err)
		}
		if p.GetDone() {
			path = p.GetPath()
		}
	}
	if stop {
		c.AwaitStatus(id, Finished, rpcTimeout)
	}
	return path
}

// Metric sums the current values of every series named name (counters,
// gauges, untyped; histograms and summaries by their sample count) whose
// labels include the given name/value pairs, over the JobManager and every
// TaskManager. Task and operator metrics exist while their subtasks run.
func (c *Cluster) Metric(name string, labelPairs ...string) float64 {
	c.t.Helper()
	if len(labelPairs)%2 != 0 {
		c.t.Fatalf("flowtest: Metric(%q): labels come in name, value pairs", name)
	}
	var sum float64
	c.mu.Lock()
	regs := append([]*prometheus.Registry(nil), c.metrics...)
	c.mu.Unlock()
	for _, reg := range regs {
		families, err := reg.Gather()
		if err != nil {
			c.t.Fatalf("flowtest: gather metrics: %v", err)
		}
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
		series:
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				for i := 0; i < len(labelPairs); i += 2 {
					if labels[labelPairs[i]] != labelPairs[i+1] {
						continue series
					}
				}
				switch {
				case m.GetCounter() != nil:
					sum += m.GetCounter().GetValue()
				case m.GetGauge() != nil:
					sum += m.GetGauge().GetValue()
				case m.GetUntyped() != nil:
					sum += m.GetUntyped().GetValue()
				case m.GetHistogram() != nil:
					sum += float64(m.GetHistogram().GetSampleCount())
				case m.GetSummary() != nil:
					sum += float64(m.GetSummary().GetSampleCount())
				}
			}
		}
	}
	return sum
}

// AwaitMetric waits until Metric(name, labelPairs...) is at least atLeast
// and returns its value; it fails the test when timeout passes first
// (naming the metric and its last value). It polls every 20ms: metrics
// have no watch.
func (c *Cluster) AwaitMetric(name string, atLeast float64, timeout time.Duration, labelPairs ...string) float64 {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := c.Metric(name, labelPairs...)
		if v >= atLeast {
			return v
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("flowtest: %s%v stayed at %v for %v, want at least %v", name, labelPairs, v, timeout, atLeast)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// taskManagerMetrics is TaskManager i's registry (created for one added
// after Start).
func (c *Cluster) taskManagerMetrics(i int) prometheus.Registerer {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.metrics) <= 1+i {
		c.metrics = append(c.metrics, prometheus.NewRegistry())
	}
	return c.metrics[1+i]
}

// StopTaskManager stops TaskManager i (0-based, id tm-<i>) as if its
// process went away: connections to it break, its tasks are canceled, and
// the jobs running there fail over under their restart strategies.
func (c *Cluster) StopTaskManager(i int) {
	c.t.Helper()
	if err := c.mc.StopTaskManager(i); err != nil {
		c.t.Fatalf("flowtest: %v", err)
	}
}

// AddTaskManager starts another TaskManager with the cluster's registry and
// slots, waits until it registered, and returns its index.
func (c *Cluster) AddTaskManager() int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	i, err := c.mc.AddTaskManager(ctx)
	if err != nil {
		c.t.Fatalf("flowtest: add a TaskManager: %v", err)
	}
	return i
}

// Stop stops the TaskManagers (canceling their tasks), then the
// JobManager, and waits for every goroutine they started. It is safe to
// call more than once; t.Cleanup calls it.
func (c *Cluster) Stop() {
	c.once.Do(func() {
		_ = c.conn.Close()
		if err := c.mc.Close(); err != nil {
			c.t.Errorf("flowtest: stop the cluster: %v", err)
		}
		c.log.close()
	})
}

func terminal(s clusterv1.JobStatus) bool {
	return s == Finished || s == Failed || s == Canceled
}

func statusName(s clusterv1.JobStatus) string {
	return strings.TrimPrefix(s.String(), "JOB_STATUS_")
}

// testLog writes the components' log lines to t.Log until the cluster
// stops (testing forbids t.Log after a test ends).
type testLog struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	} else {
		_, _ = os.Stderr.Write(p)
	}
	return len(p), nil
}

func (l *testLog) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}
