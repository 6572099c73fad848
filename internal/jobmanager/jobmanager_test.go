package jobmanager_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flowrt/flow/internal/jobmanager"
	"github.com/flowrt/flow/internal/rpcerr"
	"github.com/flowrt/flow/internal/runtime"
	"github.com/flowrt/flow/internal/taskmanager"
	"github.com/flowrt/flow/pkg/api"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cluster is a JobManager and TaskManagers over real gRPC in one process,
// with a test-chosen task body.
type cluster struct {
	t      *testing.T
	jm     *jobmanager.JobManager
	addr   string
	client clusterv1.JobManagerServiceClient
	rm     clusterv1.ResourceManagerServiceClient
	stops  []func()
}

func newCluster(t *testing.T, opts jobmanager.Options) *cluster {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	jm, err := jobmanager.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(rpcerr.ServerOptions()...)
	jm.Register(srv)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(l) }()
	go func() { defer wg.Done(); jm.Run(ctx) }()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, jm: jm, addr: l.Addr().String(),
		client: clusterv1.NewJobManagerServiceClient(conn), rm: clusterv1.NewResourceManagerServiceClient(conn)}
	t.Cleanup(func() {
		for i := len(c.stops) - 1; i >= 0; i-- {
			c.stops[i]()
		}
		conn.Close()
		cancel()
		srv.Stop()
		jm.Close()
		wg.Wait()
	})
	return c
}

// addTaskManager starts a real TaskManager whose subtasks run body; the
// returned func stops it (cancel tasks, deregister).
func (c *cluster) addTaskManager(id string, slots int, body taskmanager.RunFunc) func() {
	c.t.Helper()
	tm, err := taskmanager.New(taskmanager.Options{ID: id, JobManager: c.addr, Slots: slots, DataDir: c.t.TempDir(), Run: body})
	if err != nil {
		c.t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	srv := grpc.NewServer(rpcerr.ServerOptions()...)
	tm.Register(srv)
	tm.SetAddress(l.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	done, served := make(chan struct{}), make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(l) }()
	go func() { defer close(done); _ = tm.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			srv.Stop()
			<-served
		})
	}
	c.stops = append(c.stops, stop)
	c.waitTM(id, clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE)
	return stop
}

func (c *cluster) waitTM(id string, want clusterv1.TaskManagerState) time.Duration {
	c.t.Helper()
	start := time.Now()
	// There is no watch of TaskManagers: poll their list until the
	// condition holds (waitFor fails the test after its deadline).
	waitFor(c.t, func() bool {
		resp, err := c.client.ListTaskManagers(context.Background(), &clusterv1.ListTaskManagersRequest{})
		for _, tm := range resp.GetTaskManagers() {
			if err == nil && tm.GetId() == id && tm.GetState() == want {
				return true
			}
		}
		return false
	})
	return time.Since(start)
}

func (c *cluster) submit(g *jobgraphv1.JobGraph) string {
	c.t.Helper()
	resp, err := c.client.SubmitJob(context.Background(), &clusterv1.SubmitJobRequest{Graph: g})
	if err != nil {
		c.t.Fatalf("submit: %v", err)
	}
	return resp.GetJobId()
}

// await watches the job until it reaches a terminal status and returns the
// last event and every message seen.
func (c *cluster) await(id string) (*clusterv1.JobStatusEvent, []string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := c.client.WatchJob(ctx, &clusterv1.WatchJobRequest{JobId: id})
	if err != nil {
		c.t.Fatal(err)
	}
	var last *clusterv1.JobStatusEvent
	var seen []string
	for {
		ev, err := stream.Recv()
		if err != nil {
			if last == nil || !terminal(last.GetSummary().GetStatus()) {
				c.t.Fatalf("watch ended before a terminal status: %v (seen %v)", err, seen)
			}
			return last, seen
		}
		last = ev
		seen = append(seen, ev.GetSummary().GetStatus().String()+": "+ev.GetMessage())
	}
}

func terminal(s clusterv1.JobStatus) bool {
	return s == clusterv1.JobStatus_JOB_STATUS_FINISHED || s == clusterv1.JobStatus_JOB_STATUS_FAILED || s == clusterv1.JobStatus_JOB_STATUS_CANCELED
}

// graph is src(p) -> sink(p) with a rebalance edge, so two task vertices.
func graph(name string, p int32) *jobgraphv1.JobGraph {
	return &jobgraphv1.JobGraph{
		Name: name, Parallelism: p, MaxParallelism: 128,
		Vertices: []*jobgraphv1.Vertex{
			{Id: "src", Type: "datagen", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SOURCE},
			{Id: "sink", Type: "blackhole", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SINK},
		},
		Edges: []*jobgraphv1.Edge{{Source: "src", Target: "sink", Partitioning: jobgraphv1.Partitioning_PARTITIONING_REBALANCE}},
	}
}

func finishAfter(d time.Duration) taskmanager.RunFunc {
	return func(ctx context.Context, _ *clusterv1.TaskDeployment, _ runtime.TaskEnv) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func blockUntilCanceled(ctx context.Context, _ *clusterv1.TaskDeployment, _ runtime.TaskEnv) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestJobFinishesAndFreesSlots(t *testing.T) {
	c := newCluster(t, jobmanager.Options{})
	c.addTaskManager("tm-a", 2, finishAfter(50*time.Millisecond))
	c.addTaskManager("tm-b", 2, finishAfter(50*time.Millisecond))
	id := c.submit(graph("ok", 2))
	last, _ := c.await(id)
	if got := last.GetSummary().GetStatus(); got != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		t.Fatalf("status %v, want FINISHED", got)
	}
	d, err := c.client.GetJob(context.Background(), &clusterv1.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	var hist []string
	for _, h := range d.GetJob().GetHistory() {
		hist = append(hist, h.GetStatus().String())
	}
	if want := "JOB_STATUS_CREATED JOB_STATUS_RUNNING JOB_STATUS_FINISHED"; strings.Join(hist, " ") != want {
		t.Fatalf("history %v, want %s", hist, want)
	}
	// Spread: subtask 0 and 1 on different TaskManagers.
	tms := map[string]bool{}
	for _, task := range d.GetJob().GetTasks() {
		for _, s := range task.GetSubtasks() {
			tms[s.GetTaskManagerId()] = true
			if s.GetState() != clusterv1.TaskState_TASK_STATE_FINISHED {
				t.Errorf("subtask %s/%d is %v", task.GetId(), s.GetIndex(), s.GetState())
			}
		}
	}
	if len(tms) != 2 {
		t.Fatalf("subtasks ran on %v, want both TaskManagers", tms)
	}
	resp, _ := c.client.ListTaskManagers(context.Background(), &clusterv1.ListTaskManagersRequest{})
	for _, tm := range resp.GetTaskManagers() {
		if tm.GetFreeSlots() != tm.GetSlots() {
			t.Errorf("%s has %d of %d slots free after the job finished", tm.GetId(), tm.GetFreeSlots(), tm.GetSlots())
		}
	}
}

func TestTaskFailureFailsJobAndCancelsTheRest(t *testing.T) {
	c := newCluster(t, jobmanager.Options{})
	var mu sync.Mutex
	canceled, started := 0, 0
	othersRunning := make(chan struct{}) // closed once the 3 other subtasks run
	body := func(ctx context.Context, d *clusterv1.TaskDeployment, _ runtime.TaskEnv) error {
		if d.GetId().GetTask() == "sink" && d.GetId().GetSubtask() == 1 {
			select {
			case <-othersRunning:
			case <-ctx.Done():
				return ctx.Err()
			}
			return errors.New("boom: bad record at offset 17")
		}
		mu.Lock()
		if started++; started == 3 {
			close(othersRunning)
		}
		mu.Unlock()
		<-ctx.Done()
		mu.Lock()
		canceled++
		mu.Unlock()
		return ctx.Err()
	}
	c.addTaskManager("tm-a", 2, body)
	c.addTaskManager("tm-b", 2, body)
	id := c.submit(graph("fails", 2))
	last, seen := c.await(id)
	if got := last.GetSummary().GetStatus(); got != clusterv1.JobStatus_JOB_STATUS_FAILED {
		t.Fatalf("status %v, want FAILED (seen %v)", got, seen)
	}
	f := last.GetSummary().GetFailure()
	if !strings.Contains(f, "boom: bad record at offset 17") || !strings.Contains(f, "sink") {
		t.Fatalf("failure %q should name the task and the cause", f)
	}
	mu.Lock()
	defer mu.Unlock()
	if canceled != 3 {
		t.Fatalf("%d other subtasks were canceled, want 3", canceled)
	}
}

func TestCancelJob(t *testing.T) {
	c := newCluster(t, jobmanager.Options{})
	c.addTaskManager("tm-a", 4, blockUntilCanceled)
	id := c.submit(graph("cancel-me", 2))
	waitStatus(t, c, id, clusterv1.JobStatus_JOB_STATUS_RUNNING)
	if _, err := c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	last, _ := c.await(id)
	if got := last.GetSummary().GetStatus(); got != clusterv1.JobStatus_JOB_STATUS_CANCELED {
		t.Fatalf("status %v, want CANCELED", got)
	}
	_, err := c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: id})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("canceling a canceled job: %v, want FailedPrecondition", err)
	}
	_, err = c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("canceling an unknown job: %v, want NotFound", err)
	}
}

func waitStatus(t *testing.T, c *cluster, id string, want clusterv1.JobStatus) {
	t.Helper()
	watchUntil(t, c, id, want.String(), func(ev *clusterv1.JobStatusEvent) bool { return ev.GetSummary().GetStatus() == want })
}

// watchUntil follows the job's status events until cond holds for one,
// failing the test after 10s or when the job ends first.
func watchUntil(t *testing.T, c *cluster, id, what string, cond func(*clusterv1.JobStatusEvent) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.client.WatchJob(ctx, &clusterv1.WatchJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("job %s: no %s (seen %v): %v", id, what, seen, err)
		}
		if cond(ev) {
			return
		}
		seen = append(seen, ev.GetSummary().GetStatus().String()+": "+ev.GetMessage())
	}
}

func TestNotEnoughSlotsWaitsVisiblyThenFails(t *testing.T) {
	c := newCluster(t, jobmanager.Options{SlotTimeout: 700 * time.Millisecond})
	c.addTaskManager("tm-a", 2, finishAfter(time.Millisecond))
	id := c.submit(graph("too-wide", 3))
	last, seen := c.await(id)
	if got := last.GetSummary().GetStatus(); got != clusterv1.JobStatus_JOB_STATUS_FAILED {
		t.Fatalf("status %v, want FAILED", got)
	}
	waited := false
	for _, s := range seen {
		if strings.Contains(s, "waiting for slots") && strings.Contains(s, "needs 3 slots but only 2 are free") {
			waited = true
		}
	}
	if !waited {
		t.Fatalf("no visible waiting status in %v", seen)
	}
	if f := last.GetSummary().GetFailure(); !strings.Contains(f, "not enough slots") || !strings.Contains(f, "add TaskManagers") {
		t.Fatalf("failure %q should say what is missing and how to fix it", f)
	}
}

func TestWaitingJobStartsWhenSlotsArrive(t *testing.T) {
	c := newCluster(t, jobmanager.Options{SlotTimeout: 20 * time.Second})
	c.addTaskManager("tm-a", 2, finishAfter(time.Millisecond))
	id := c.submit(graph("wide", 4))
	watchUntil(t, c, id, "waiting for slots", func(ev *clusterv1.JobStatusEvent) bool {
		return strings.Contains(ev.GetMessage(), "waiting for slots")
	})
	c.addTaskManager("tm-b", 2, finishAfter(time.Millisecond))
	last, _ := c.await(id)
	if got := last.GetSummary().GetStatus(); got != clusterv1.JobStatus_JOB_STATUS_FINISHED {
		t.Fatalf("status %v, want FINISHED", got)
	}
}

// A TaskManager that does not answer a deployment is suspected at once and
// the attempt goes to the others without using a restart attempt.
func TestTaskManagerLostFailsItsTasks(t *testing.T) {
	const timeout = 400 * time.Millisecond
	c := newCluster(t, jobmanager.Options{HeartbeatTimeout: timeout})
	c.addTaskManager("tm-a", 2, blockUntilCanceled)
	// A TaskManager that registers and then never heartbeats: its address
	// accepts no connections, so it behaves like a killed process.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	if _, err := c.rm.RegisterTaskManager(context.Background(), &clusterv1.RegisterTaskManagerRequest{
		TaskManagerId: "tm-ghost", Address: deadAddr, Slots: 2,
	}); err != nil {
		t.Fatal(err)
	}
	registered := time.Now()
	id := c.submit(graph("spread", 2)) // one slot on each TaskManager
	c.waitTM("tm-ghost", clusterv1.TaskManagerState_TASK_MANAGER_STATE_LOST)
	if took := time.Since(registered); took > timeout+300*time.Millisecond {
		t.Fatalf("marked lost after %s, heartbeat timeout %s", took, timeout)
	}
	// The deployment to the unreachable TaskManager does not use a restart
	// attempt (the job has none): the attempt is scheduled again on the
	// live TaskManager, which has the slots for it.
	waitStatus(t, c, id, clusterv1.JobStatus_JOB_STATUS_RUNNING)
	waitFor(t, func() bool {
		resp, err := c.client.GetJob(context.Background(), &clusterv1.GetJobRequest{JobId: id})
		if err != nil || resp.GetJob().GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RUNNING {
			return false
		}
		for _, tk := range resp.GetJob().GetTasks() {
			for _, s := range tk.GetSubtasks() {
				if s.GetTaskManagerId() != "tm-a" || s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING {
					return false
				}
			}
		}
		return true
	})
	if _, err := c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	if last, _ := c.await(id); last.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_CANCELED {
		t.Fatalf("status %v, want CANCELED", last.GetSummary().GetStatus())
	}
	// The ghost's heartbeat after being declared lost asks it to re-register.
	hb, err := c.rm.Heartbeat(context.Background(), &clusterv1.HeartbeatRequest{TaskManagerId: "tm-ghost"})
	if err != nil || !hb.GetReregister() {
		t.Fatalf("heartbeat of a lost TaskManager: %v %v, want reregister", hb, err)
	}
}

func TestSubmitValidation(t *testing.T) {
	reg := api.NewRegistry()
	reg.MustRegister(api.OperatorType{Name: "datagen", Kind: api.KindSource, NewSource: func(api.Config) (api.Source, error) { return nil, nil }})
	c := newCluster(t, jobmanager.Options{Registry: reg})
	g := graph("bad", 2)
	_, err := c.client.SubmitJob(context.Background(), &clusterv1.SubmitJobRequest{Graph: g})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `unknown operator type "blackhole" (known types: datagen)`) {
		t.Fatalf("unknown type: %v", err)
	}
	g = graph("too-parallel", 200)
	g.Vertices[1].Type = "datagen"
	_, err = c.client.SubmitJob(context.Background(), &clusterv1.SubmitJobRequest{Graph: g})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "exceeds maxParallelism 128") {
		t.Fatalf("parallelism above max: %v", err)
	}
}

func TestRestartedJobManagerKeepsJobs(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, jobmanager.Options{DataDir: dir})
	c.addTaskManager("tm-a", 4, func(ctx context.Context, d *clusterv1.TaskDeployment, env runtime.TaskEnv) error {
		if d.GetGraph().GetName() == "short" {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	})
	finishedID := c.submit(graph("short", 1))
	c.await(finishedID)
	runningID := c.submit(graph("long", 1))
	waitStatus(t, c, runningID, clusterv1.JobStatus_JOB_STATUS_RUNNING)
	c.jm.Close() // the JobManager goes away while "long" runs

	jm, err := jobmanager.New(jobmanager.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer jm.Close()
	resp, err := jm.ListJobs(context.Background(), &clusterv1.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*clusterv1.JobSummary{}
	for _, j := range resp.GetJobs() {
		got[j.GetJobId()] = j
	}
	if s := got[finishedID]; s == nil || s.GetStatus() != clusterv1.JobStatus_JOB_STATUS_FINISHED || s.GetName() != "short" {
		t.Fatalf("finished job after restart: %v", s)
	}
	s := got[runningID]
	if s == nil || s.GetStatus() != clusterv1.JobStatus_JOB_STATUS_FAILED || !strings.Contains(s.GetFailure()+jobNote(t, jm, runningID), "restarted") {
		t.Fatalf("a job running when the JobManager stopped should be FAILED saying why: %v", s)
	}
}

func jobNote(t *testing.T, jm *jobmanager.JobManager, id string) string {
	d, err := jm.GetJob(context.Background(), &clusterv1.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	h := d.GetJob().GetHistory()
	return h[len(h)-1].GetMessage()
}

func withRestart(g *jobgraphv1.JobGraph, r *jobgraphv1.RestartConfig) *jobgraphv1.JobGraph {
	g.RestartConfig = r
	return g
}

// fixedDelay is the restart strategy fixed_delay.
func fixedDelay(attempts int32, delay time.Duration) *jobgraphv1.RestartConfig {
	return &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY,
		Attempts: proto.Int32(attempts), Delay: durationpb.New(delay)}
}

func TestRestartStrategyRestartsFailedJob(t *testing.T) {
	c := newCluster(t, jobmanager.Options{})
	body := func(ctx context.Context, d *clusterv1.TaskDeployment, _ runtime.TaskEnv) error {
		if d.GetId().GetAttempt() == 1 && d.GetId().GetTask() == "sink" {
			return errors.New("transient failure")
		}
		return nil
	}
	c.addTaskManager("tm-a", 2, body)
	c.addTaskManager("tm-b", 2, body)
	id := c.submit(withRestart(graph("restarts", 2), fixedDelay(2, 100*time.Millisecond)))
	last, seen := c.await(id)
	if got := last.GetSummary().GetStatus(); got != clusterv1.JobStatus_JOB_STATUS_FINISHED || last.GetSummary().GetAttempt() != 2 {
		t.Fatalf("status %v attempt %d, want FINISHED on attempt 2 (seen %v)", got, last.GetSummary().GetAttempt(), seen)
	}
	restarting := false
	for _, s := range seen {
		if strings.HasPrefix(s, "JOB_STATUS_RESTARTING") && strings.Contains(s, "attempt 2") && strings.Contains(s, "transient failure") {
			restarting = true
		}
	}
	if !restarting {
		t.Fatalf("no RESTARTING status naming attempt and cause in %v", seen)
	}
}

func TestRestartStrategyGivesUp(t *testing.T) {
	c := newCluster(t, jobmanager.Options{})
	attempts := map[int32]bool{}
	var mu sync.Mutex
	c.addTaskManager("tm-a", 2, func(ctx context.Context, d *clusterv1.TaskDeployment, _ runtime.TaskEnv) error {
		mu.Lock()
		attempts[d.GetId().GetAttempt()] = true
		mu.Unlock()
		return errors.New("always broken")
	})
	id := c.submit(withRestart(graph("gives-up", 1), fixedDelay(1, 10*time.Millisecond)))
	last, _ := c.await(id)
	f := last.GetSummary().GetFailure()
	if last.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_FAILED || !strings.Contains(f, "always broken") || !strings.Contains(f, "all 1 restart attempts used") {
		t.Fatalf("status %v failure %q", last.GetSummary().GetStatus(), f)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 2 {
		t.Fatalf("ran attempts %v, want 1 and 2", attempts)
	}
}

// A graph whose operator cannot be built from its config (as a TaskManager
// would build it) is refused at submission, not restarted forever.
func TestSubmitBuildsEachOperator(t *testing.T) {
	reg := api.NewRegistry()
	reg.MustRegister(api.OperatorType{Name: "datagen", Kind: api.KindSource, NewSource: func(api.Config) (api.Source, error) {
		return nil, errors.New("slide 2s must not exceed size 1s")
	}})
	reg.MustRegister(api.OperatorType{Name: "blackhole", Kind: api.KindSink, NewSink: func(api.Config) (api.Sink, error) { return nil, nil }})
	c := newCluster(t, jobmanager.Options{Registry: reg})
	_, err := c.client.SubmitJob(context.Background(), &clusterv1.SubmitJobRequest{Graph: graph("unbuildable", 1)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `operator "src": slide 2s must not exceed size 1s`) {
		t.Fatalf("submit of an unbuildable operator: %v", err)
	}
}
