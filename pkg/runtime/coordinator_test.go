package runtime

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/pkg/checkpoint"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/jobgraph"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// testCoordinator drives checkpoints of one job attempt on the test
// harness the way the JobManager does (internal/jobmanager/checkpoints.go):
// the pure pkg/checkpoint.Coordinator decides; this driver triggers the
// source subtasks through their control mailboxes, collects acks from the
// subtasks' responders, writes `_metadata` last through a storage.JobStore
// on file://, and notifies every subtask.
type testCoordinator struct {
	t     testing.TB
	g     *jobgraphv1.JobGraph
	store *storage.JobStore
	opts  *clusterv1.CheckpointOptions // Unaligned, AlignedTimeoutMs, Incremental

	mu       sync.Mutex
	coord    *checkpoint.Coordinator
	controls map[checkpoint.TaskID]chan any
	sources  map[checkpoint.TaskID]bool
	attempt  int32
	lastID   uint64
	retained []uint64
	// latest completed checkpoint (the restore point of the next attempt)
	latest    *checkpointv1.CheckpointMetadata
	completed []uint64
	durations []time.Duration // trigger to completion, per completed checkpoint
	aborted   map[uint64]string
	declines  []string

	stop chan struct{}
	wg   sync.WaitGroup
}

func newTestCoordinator(t testing.TB, g *jobgraphv1.JobGraph, storeURL string, opts *clusterv1.CheckpointOptions) *testCoordinator {
	t.Helper()
	ctx := context.Background()
	s, err := storage.Open(ctx, storeURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	js, _, err := storage.OpenJob(ctx, s, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if opts == nil {
		opts = &clusterv1.CheckpointOptions{}
	}
	return &testCoordinator{t: t, g: g, store: js, opts: opts, aborted: map[uint64]string{}}
}

// start begins checkpointing a new attempt every interval; the returned
// jobOptions wire each subtask to the coordinator and restore it from the
// latest completed checkpoint.
func (c *testCoordinator) start(o jobOptions, interval time.Duration) jobOptions {
	c.mu.Lock()
	defer c.mu.Unlock()
	plan, err := jobgraph.BuildPlan(c.g)
	if err != nil {
		c.t.Fatal(err)
	}
	var tasks []checkpoint.TaskID
	c.sources = map[checkpoint.TaskID]bool{}
	c.controls = map[checkpoint.TaskID]chan any{}
	for _, pt := range plan.Tasks {
		for i := 0; i < pt.Parallelism; i++ {
			id := checkpoint.TaskID{Vertex: pt.ID, Subtask: i}
			tasks = append(tasks, id)
			c.controls[id] = make(chan any, 16)
			if len(pt.Inputs) == 0 {
				c.sources[id] = true
			}
		}
	}
	coord, err := checkpoint.New(checkpoint.Config{Interval: interval, Timeout: time.Minute, TolerableFailures: -1, Retain: 2},
		tasks, time.Now(), checkpoint.Resume{LastID: c.lastID, Retained: c.retained})
	if err != nil {
		c.t.Fatal(err)
	}
	c.coord = coord
	c.attempt = o.attempt
	restore := c.latest
	o.env = func(d *clusterv1.TaskDeployment, env *TaskEnv) {
		id := checkpoint.TaskID{Vertex: d.GetId().GetTask(), Subtask: int(d.GetId().GetSubtask())}
		env.Control = c.controls[id]
		env.Checkpoints = &testResponder{c: c, task: id, attempt: d.GetId().GetAttempt()}
		if restore != nil {
			d.Restore = c.restoreFor(restore, d)
		}
	}
	prevDone := o.done
	o.done = func(d *clusterv1.TaskDeployment, err error) {
		if err == nil {
			c.step(checkpoint.Event{Type: checkpoint.EventTaskFinished, Time: time.Now(),
				Task: checkpoint.TaskID{Vertex: d.GetId().GetTask(), Subtask: int(d.GetId().GetSubtask())}}, d.GetId().GetAttempt())
		}
		if prevDone != nil {
			prevDone(d, err)
		}
	}
	c.stop = make(chan struct{})
	stop := c.stop
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-tk.C:
				c.step(checkpoint.Event{Type: checkpoint.EventTick, Time: now}, o.attempt)
			}
		}
	}()
	return o
}

// halt stops the attempt's coordinator (the job failed or finished).
func (c *testCoordinator) halt() {
	c.mu.Lock()
	if c.stop != nil {
		close(c.stop)
		c.stop = nil
	}
	if c.coord != nil {
		c.retained = c.coord.Retained()
	}
	c.coord = nil
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *testCoordinator) step(ev checkpoint.Event, attempt int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stepLocked(ev, attempt)
}

func (c *testCoordinator) stepLocked(ev checkpoint.Event, attempt int32) {
	if c.coord == nil || attempt != c.attempt {
		return
	}
	acts, err := c.coord.Step(ev)
	if err != nil {
		return
	}
	for _, a := range append([]checkpoint.Action(nil), acts...) {
		c.exec(a)
	}
}

func (c *testCoordinator) exec(a checkpoint.Action) {
	ctx := context.Background()
	switch a.Type {
	case checkpoint.ActionTrigger:
		c.lastID = max(c.lastID, a.ID)
		opts := proto.Clone(c.opts).(*clusterv1.CheckpointOptions)
		opts.Location, opts.StorageBase, opts.Savepoint = c.store.Dir(int64(a.ID)), c.store.Storage().URL(), a.Savepoint
		for id := range c.sources {
			select {
			case c.controls[id] <- TriggerCheckpoint{ID: int64(a.ID), TimestampMs: a.Time.UnixMilli(), Options: opts}:
			default:
				c.stepLocked(checkpoint.Event{Type: checkpoint.EventDecline, ID: a.ID, Task: id, Reason: checkpoint.ReasonTaskNotReady}, c.attempt)
			}
		}
	case checkpoint.ActionFinalize:
		md := c.metadata(a)
		err := c.store.Complete(ctx, md)
		if err == nil {
			c.latest = md
		}
		c.stepLocked(checkpoint.Event{Type: checkpoint.EventFinalized, ID: a.ID, Err: err}, c.attempt)
	case checkpoint.ActionComplete:
		c.completed = append(c.completed, a.ID)
		c.durations = append(c.durations, a.Time.Sub(a.TriggerTime))
		c.retained = c.coord.Retained()
		c.notify(int64(a.ID), true)
	case checkpoint.ActionAbort:
		c.aborted[a.ID] = a.Reason.String()
		c.notify(int64(a.ID), false)
	case checkpoint.ActionDiscard:
		if err := c.store.Discard(ctx, int64(a.ID)); err != nil {
			c.t.Errorf("discard checkpoint %d: %v", a.ID, err)
		}
	}
}

func (c *testCoordinator) notify(id int64, completed bool) {
	for _, ch := range c.controls {
		select {
		case ch <- NotifyCheckpoint{ID: id, Completed: completed}:
		default:
		}
	}
}

func (c *testCoordinator) metadata(a checkpoint.Action) *checkpointv1.CheckpointMetadata {
	md := &checkpointv1.CheckpointMetadata{FormatVersion: storage.FormatVersion, JobId: "job-1", JobName: c.g.GetName(),
		CheckpointId: int64(a.ID), TriggerTimeMs: a.TriggerTime.UnixMilli(), CompletionTimeMs: time.Now().UnixMilli(),
		Graph: c.g, Stats: &checkpointv1.CheckpointStats{}}
	byUID := map[string]*checkpointv1.OperatorState{}
	for _, v := range c.g.GetVertices() {
		uid := v.GetUid()
		if uid == "" {
			uid = v.GetId()
		}
		op := &checkpointv1.OperatorState{Uid: uid, OperatorId: v.GetId(), Type: v.GetType(),
			Parallelism: int32(jobgraph.VertexParallelism(c.g, v)), MaxParallelism: 128}
		byUID[uid] = op
		md.Operators = append(md.Operators, op)
	}
	for _, ack := range a.Acks {
		if ack.Finished {
			continue
		}
		req := &clusterv1.AcknowledgeCheckpointRequest{}
		if err := proto.Unmarshal(ack.Handle, req); err != nil {
			c.t.Errorf("ack of %s: %v", ack.Task, err)
			continue
		}
		for uid, st := range req.GetOperators() {
			if op := byUID[uid]; op != nil {
				op.Subtasks = append(op.Subtasks, st)
			} else {
				c.t.Errorf("ack of %s has unknown uid %q", ack.Task, uid)
			}
		}
	}
	for _, op := range md.Operators {
		sort.Slice(op.Subtasks, func(x, y int) bool { return op.Subtasks[x].GetSubtask() < op.Subtasks[y].GetSubtask() })
	}
	return md
}

// restoreFor mirrors the JobManager's restoreFor.
func (c *testCoordinator) restoreFor(md *checkpointv1.CheckpointMetadata, d *clusterv1.TaskDeployment) *clusterv1.TaskRestore {
	out := &clusterv1.TaskRestore{CheckpointId: md.GetCheckpointId(), Location: c.store.Dir(md.GetCheckpointId()),
		StorageBase: c.store.Storage().URL(), Operators: map[string]*clusterv1.RestoreOperator{}}
	byUID := map[string]*checkpointv1.OperatorState{}
	for _, op := range md.GetOperators() {
		byUID[op.GetUid()] = op
	}
	uidOf := map[string]string{}
	for _, v := range d.GetGraph().GetVertices() {
		uid := v.GetUid()
		if uid == "" {
			uid = v.GetId()
		}
		uidOf[v.GetId()] = uid
	}
	for _, opID := range d.GetOperators() {
		old := byUID[uidOf[opID]]
		if old == nil || len(old.GetSubtasks()) == 0 {
			continue
		}
		ro := &clusterv1.RestoreOperator{}
		for _, st := range old.GetSubtasks() {
			if old.GetParallelism() != d.GetParallelism() || st.GetSubtask() == d.GetId().GetSubtask() {
				ro.States = append(ro.States, st)
			}
		}
		out.Operators[uidOf[opID]] = ro
	}
	return out
}

func (c *testCoordinator) completedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.completed)
}

func (c *testCoordinator) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("completed %v aborted %v declines %v", c.completed, c.aborted, c.declines)
}

// testResponder is one subtask's CheckpointResponder.
type testResponder struct {
	c       *testCoordinator
	task    checkpoint.TaskID
	attempt int32
}

func (r *testResponder) Acknowledge(ctx context.Context, id int64, ops map[string]*checkpointv1.SubtaskState, timing *clusterv1.TaskCheckpointTiming) error {
	req := &clusterv1.AcknowledgeCheckpointRequest{CheckpointId: id, Operators: ops, Timing: timing}
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	r.c.step(checkpoint.Event{Type: checkpoint.EventAck, Time: time.Now(), ID: uint64(id), Task: r.task, Handle: b}, r.attempt)
	return nil
}

func (r *testResponder) Decline(ctx context.Context, id int64, reason string) error {
	r.c.mu.Lock()
	r.c.declines = append(r.c.declines, fmt.Sprintf("%d %s: %s", id, r.task, reason))
	r.c.mu.Unlock()
	rs := checkpoint.ReasonDeclined
	for _, name := range []string{"subsumed", "canceled", "task-not-ready"} {
		if len(reason) > len(name) && reason[:len(name)+1] == name+":" {
			rs, _ = checkpoint.ParseReason(name)
		}
	}
	r.c.step(checkpoint.Event{Type: checkpoint.EventDecline, Time: time.Now(), ID: uint64(id), Task: r.task, Reason: rs}, r.attempt)
	return nil
}

// firstDuration returns the trigger-to-completion time of the first
// completed checkpoint.
func (c *testCoordinator) firstDuration() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.durations) == 0 {
		return 0, false
	}
	return c.durations[0], true
}

// latestMetadata is the latest completed checkpoint's metadata (nil before
// the first).
func (c *testCoordinator) latestMetadata() *checkpointv1.CheckpointMetadata {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest
}
