package jobmaster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/internal/jobmanager/ha"
	"github.com/flowrt/flow/pkg/checkpoint"
	"github.com/flowrt/flow/pkg/jobspec"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// maxHistory bounds the checkpoint history kept per job.
const maxHistory = 100

// storageTimeout bounds one storage operation of the master's I/O.
const storageTimeout = time.Minute

// CheckpointSettings are a job's checkpoint settings (its graph's
// checkpoint section).
type CheckpointSettings = jobspec.Checkpoints

// Checkpoints is the driver of a job's checkpoints: the pure coordinator
// (pkg/checkpoint) decides; the driver carries out its actions (triggers
// to the source subtasks, `_metadata` writes, notifications, deletions)
// through the master's I/O and feeds their results back as events. It is
// owned by the master's loop.
type Checkpoints struct {
	m        *Master
	cfg      CheckpointSettings
	storeURL string
	store    CompletedStore
	// ids records every checkpoint id before its trigger goes out (nil:
	// ids continue above the newest checkpoint in storage only).
	ids   ha.CheckpointIDCounter
	jobID string
	// coord is the current attempt's coordinator (nil when the attempt is
	// not running); gen counts coordinators, so results of an earlier
	// one's I/O are told apart.
	coord   *checkpoint.Coordinator
	gen     int
	sources map[checkpoint.TaskID]bool
	// triggered[src] is closed once the last trigger sent to src returned:
	// the next trigger to src waits for it, so a source hears triggers in
	// checkpoint order (reordered ones would let a periodic barrier
	// overtake, and subsume, a stop's savepoint downstream). Owned by the
	// loop; reset with each coordinator.
	triggered map[checkpoint.TaskID]chan struct{}
	// stats are the counters the metrics read (through the view).
	stats CheckpointStats
	// sourceEnded stops triggering once a source subtask finished: no
	// barrier can enter the graph through it any more.
	sourceEnded bool
	lastID      uint64
	retained    []uint64
	history     []*clusterv1.CheckpointInfo
	byID        map[uint64]*clusterv1.CheckpointInfo
	// pub holds the published copy of each history entry; touched are the
	// entries changed since the last publish.
	pub     map[uint64]*clusterv1.CheckpointInfo
	touched map[uint64]bool
	// restore is what the next attempt starts from: the latest completed
	// checkpoint, or the snapshot the job was submitted with.
	restore *RestorePoint
	// savepoints in progress or done, by checkpoint id; nextSavepoint is the
	// request being triggered (consumed by ActionTrigger).
	savepoints    map[uint64]*savepointOp
	nextSavepoint *savepointOp
	// points are the retained completed checkpoints of the job's own
	// storage by id (what a restart may restore); initial is the snapshot
	// the job was submitted with (the oldest restore point).
	points  map[uint64]*RestorePoint
	initial *RestorePoint
	// corrupt are the checkpoints a restore found unreadable, with why;
	// they are never restored again. verifiedFor is the failed attempt
	// whose restart already chose its restore point.
	corrupt     map[int64]string
	verifiedFor int32
}

func newCheckpoints(cfg CheckpointSettings) *Checkpoints {
	return &Checkpoints{cfg: cfg, byID: map[uint64]*clusterv1.CheckpointInfo{}, savepoints: map[uint64]*savepointOp{},
		points: map[uint64]*RestorePoint{}, corrupt: map[int64]string{}, pub: map[uint64]*clusterv1.CheckpointInfo{},
		touched: map[uint64]bool{}}
}

// OpenCheckpoints prepares a job's checkpointing: it opens the storage
// (defaultURL unless the settings name one) and, for a job resubmitted
// under the same id, resumes from what is stored. New checkpoint ids
// continue above the highest one ids recorded and the newest checkpoint
// in storage (a data dir from before the counter has only the latter);
// ids nil: above the storage's only. It does I/O: call it before the job
// master starts.
func OpenCheckpoints(ctx context.Context, jobID string, cfg CheckpointSettings, defaultURL string, hs HA, log *slog.Logger) (*Checkpoints, error) {
	c := newCheckpoints(cfg)
	ids := hs.IDs
	c.ids, c.jobID = ids, jobID
	if ids != nil {
		n, err := ids.Get(ctx, jobID)
		if err != nil {
			return nil, err
		}
		c.lastID = uint64(n)
	}
	if cfg.Interval <= 0 {
		return c, nil
	}
	c.storeURL = cfg.Storage
	if c.storeURL == "" {
		c.storeURL = defaultURL
	}
	store, completed, err := hs.open(ctx, c.storeURL, jobID, log)
	if err != nil {
		return nil, err
	}
	c.store = store
	for _, cp := range completed {
		c.retained = append(c.retained, cp.ID())
		c.lastID = max(c.lastID, cp.ID())
		c.points[cp.ID()] = cp
	}
	return c, nil
}

// RestoreFrom makes the job start from r (the snapshot it was submitted
// with).
func (c *Checkpoints) RestoreFrom(r *RestorePoint) { c.restore, c.initial = r, r }

// Close releases the storage of checkpoints that were opened but never
// given to a job master.
func (c *Checkpoints) Close() { c.close() }

func (c *Checkpoints) close() {
	if c != nil && c.store != nil {
		c.store.Close()
	}
}

// touch returns the history entry of checkpoint id, marked for the next
// publish (nil if there is none).
func (c *Checkpoints) touch(id uint64) *clusterv1.CheckpointInfo {
	info := c.byID[id]
	if info != nil {
		c.touched[id] = true
	}
	return info
}

// published copies the entries changed since the last call and returns
// the history, newest first, and the path of the next restore point.
func (c *Checkpoints) published() ([]*clusterv1.CheckpointInfo, string) {
	for id := range c.touched {
		if info := c.byID[id]; info != nil {
			c.pub[id] = proto.Clone(info).(*clusterv1.CheckpointInfo)
		}
		delete(c.touched, id)
	}
	out := make([]*clusterv1.CheckpointInfo, 0, len(c.history))
	for i := len(c.history) - 1; i >= 0; i-- {
		out = append(out, c.pub[uint64(c.history[i].GetId())])
	}
	path := ""
	if c.restore != nil {
		path = c.restore.dirURL
	}
	return out, path
}

func (c *Checkpoints) addHistory(info *clusterv1.CheckpointInfo) {
	id := uint64(info.GetId())
	c.history = append(c.history, info)
	c.byID[id] = info
	c.touched[id] = true
	if len(c.history) > maxHistory {
		old := uint64(c.history[0].GetId())
		delete(c.byID, old)
		delete(c.pub, old)
		delete(c.touched, old)
		c.history = c.history[1:]
	}
}

// start starts checkpointing for the job's current attempt once it runs.
func (c *Checkpoints) start(now time.Time) {
	m := c.m
	if c.coord != nil || m.plan == nil {
		return
	}
	var tasks []checkpoint.TaskID
	c.sources, c.triggered = map[checkpoint.TaskID]bool{}, nil
	for _, t := range m.plan.Tasks {
		for i := 0; i < t.Parallelism; i++ {
			id := checkpoint.TaskID{Vertex: t.ID, Subtask: i}
			tasks = append(tasks, id)
			if len(t.Inputs) == 0 {
				c.sources[id] = true
			}
		}
	}
	interval := c.cfg.Interval
	if c.store == nil {
		interval = 0 // no storage: savepoints only
	}
	cfg := checkpoint.Config{
		Interval: interval, MinPause: c.cfg.MinPause, Timeout: c.cfg.Timeout,
		MaxConcurrent: c.cfg.MaxConcurrent, TolerableFailures: c.cfg.TolerableFailures, Retain: c.cfg.Retain,
	}
	coord, err := checkpoint.New(cfg, tasks, now, checkpoint.Resume{LastID: c.lastID, Retained: c.retained})
	if err != nil {
		m.log.Error("checkpoint coordinator", "job", m.id, "err", err)
		return
	}
	c.coord = coord
	c.gen++
	c.sourceEnded = false
}

// stop ends the attempt's checkpointing; pending checkpoints are marked
// failed with reason.
func (c *Checkpoints) stop(reason string) {
	if c.coord == nil {
		return
	}
	for _, id := range c.coord.Pending() {
		if info := c.touch(id); info != nil && info.Status == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_IN_PROGRESS {
			info.Status = clusterv1.CheckpointStatus_CHECKPOINT_STATUS_FAILED
			info.Failure = reason
			c.abortFiles(id, nil)
		}
		if sp := c.savepoints[id]; sp != nil && sp.unfinished() {
			c.failSavepoint(sp, fmt.Errorf("savepoint %d failed: %s", id, reason))
		}
	}
	c.retained = c.coord.Retained()
	c.coord = nil
}

// tick steps the running coordinator with the time.
func (c *Checkpoints) tick(now time.Time) {
	if c.coord == nil || c.sourceEnded || c.m.lc.Status() != clusterv1.JobStatus_JOB_STATUS_RUNNING {
		return
	}
	c.step(checkpoint.Event{Type: checkpoint.EventTick, Time: now})
}

// step feeds one event to the coordinator and carries out its actions.
func (c *Checkpoints) step(ev checkpoint.Event) {
	if c.coord == nil {
		return
	}
	actions, err := c.coord.Step(ev)
	if err != nil {
		c.m.log.Debug("checkpoint event rejected", "job", c.m.id, "event", ev.Type, "id", ev.ID, "err", err)
		return
	}
	if len(actions) > 0 {
		c.m.dirty = true
	}
	// Step's slice is reused by the next Step, and carrying out an action
	// may step again: copy first.
	for _, a := range append([]checkpoint.Action(nil), actions...) {
		c.exec(a)
	}
}

func (c *Checkpoints) taskFinished(tid checkpoint.TaskID) {
	if c.coord == nil {
		return
	}
	if c.sources[tid] {
		c.sourceEnded = true
	}
	c.step(checkpoint.Event{Type: checkpoint.EventTaskFinished, Time: c.m.now, Task: tid})
}

func (c *Checkpoints) acknowledge(req *clusterv1.AcknowledgeCheckpointRequest, handle []byte) {
	t := req.GetTask()
	if t.GetAttempt() != c.m.lc.Attempt() {
		return
	}
	id := uint64(req.GetCheckpointId())
	if info := c.touch(id); info != nil && req.GetTiming() != nil {
		tm := proto.Clone(req.GetTiming()).(*clusterv1.TaskCheckpointTiming)
		tm.Task, tm.Subtask, tm.AckTimeMs = t.GetTask(), t.GetSubtask(), c.m.now.UnixMilli()
		info.Tasks = append(info.Tasks, tm)
	}
	if sp := c.savepoints[id]; sp != nil {
		sp.ack()
	}
	timing := req.GetTiming()
	c.step(checkpoint.Event{
		Type: checkpoint.EventAck, Time: c.m.now, ID: id,
		Task: checkpoint.TaskID{Vertex: t.GetTask(), Subtask: int(t.GetSubtask())}, Handle: handle,
		Stats: checkpoint.AckStats{
			SyncDuration: time.Duration(timing.GetSyncMs()) * time.Millisecond, AsyncDuration: time.Duration(timing.GetAsyncMs()) * time.Millisecond,
			AlignmentDuration: time.Duration(timing.GetAlignmentMs()) * time.Millisecond, StateSize: timing.GetStateSize(),
		},
	})
}

func (c *Checkpoints) decline(req *clusterv1.DeclineCheckpointRequest) {
	t := req.GetTask()
	if t.GetAttempt() != c.m.lc.Attempt() {
		return
	}
	reason := checkpoint.ReasonDeclined
	if name, _, _ := strings.Cut(req.GetReason(), ":"); name != "" {
		if r, err := checkpoint.ParseReason(name); err == nil {
			reason = r
		}
	}
	id := uint64(req.GetCheckpointId())
	if info := c.touch(id); info != nil && info.Failure == "" {
		info.Failure = fmt.Sprintf("declined by %s/%d: %s", t.GetTask(), t.GetSubtask(), req.GetReason())
	}
	c.step(checkpoint.Event{Type: checkpoint.EventDecline, Time: c.m.now, ID: id,
		Task: checkpoint.TaskID{Vertex: t.GetTask(), Subtask: int(t.GetSubtask())}, Reason: reason})
}

// finalizeFailed records why completing checkpoint id failed (err nil:
// it did not), so the history says what broke.
func (c *Checkpoints) finalizeFailed(id uint64, err error) {
	if info := c.touch(id); err != nil && info != nil && info.Failure == "" {
		info.Failure = err.Error()
	}
}

// reservation is the recording of a checkpoint id in the counter; done is
// closed once it returned, with err set.
type reservation struct {
	done chan struct{}
	err  error
}

// wait reports whether the id was recorded (false also when ctx ended).
func (r *reservation) wait(ctx context.Context) bool {
	if r == nil {
		return true
	}
	select {
	case <-r.done:
		return r.err == nil
	case <-ctx.Done():
		return false
	}
}

// reserve records checkpoint id in the counter before any trigger of it
// goes out (triggerSources waits for it), so that no later job master
// issues it again; nil without a counter. If it cannot be recorded, the
// checkpoint is declined (a failure) and no trigger is sent.
func (c *Checkpoints) reserve(id uint64) *reservation {
	if c.ids == nil {
		return nil
	}
	m, ids, job, gen, attempt := c.m, c.ids, c.jobID, c.gen, c.m.lc.Attempt()
	var src checkpoint.TaskID
	for t := range c.sources {
		src = t
		break
	}
	r := &reservation{done: make(chan struct{})}
	m.goIO(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, storageTimeout)
		err := ids.SetAtLeast(ctx, job, int64(id))
		cancel()
		r.err = err
		close(r.done)
		if err == nil || m.ctx.Err() != nil {
			return
		}
		m.post(result(func(m *Master) {
			if m.ck.gen == gen && m.lc.Attempt() == attempt {
				m.ck.finalizeFailed(id, fmt.Errorf("record the checkpoint id: %w", err))
				m.ck.step(checkpoint.Event{Type: checkpoint.EventDecline, Time: m.now, ID: id, Task: src, Reason: checkpoint.ReasonDeclined})
			}
		}))
	})
	return r
}

// triggerSources asks every source subtask to start the checkpoint once
// its id is recorded (r; nil: at once).
func (c *Checkpoints) triggerSources(a checkpoint.Action, opts *clusterv1.CheckpointOptions, r *reservation) {
	m := c.m
	attempt, gen := m.lc.Attempt(), c.gen
	for src := range c.sources {
		s := m.lc.Subtask(src.Vertex, int32(src.Subtask))
		tm := s.GetTaskManagerId()
		if s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING || !m.exec.Reachable(tm) {
			c.step(checkpoint.Event{Type: checkpoint.EventDecline, Time: m.now, ID: a.ID, Task: src, Reason: checkpoint.ReasonTaskNotReady})
			continue
		}
		req := &clusterv1.TriggerCheckpointRequest{
			Task:         &clusterv1.TaskID{JobId: m.id, Attempt: attempt, Task: src.Vertex, Subtask: int32(src.Subtask)},
			CheckpointId: int64(a.ID), TimestampMs: a.Time.UnixMilli(), Options: opts,
		}
		if c.triggered == nil {
			c.triggered = map[checkpoint.TaskID]chan struct{}{}
		}
		prev, sent := c.triggered[src], make(chan struct{})
		c.triggered[src] = sent
		m.goIO(func(ctx context.Context) {
			if !r.wait(ctx) {
				close(sent)
				return
			}
			if prev != nil {
				select { // bounded: that call has its own timeout
				case <-prev:
				case <-ctx.Done():
				}
			}
			ctx, cancel := context.WithTimeout(ctx, m.cfg.RPCTimeout)
			err := m.exec.TriggerCheckpoint(ctx, tm, req)
			cancel()
			close(sent)
			if err == nil || m.ctx.Err() != nil {
				return
			}
			reason := checkpoint.ReasonDeclined
			if status.Code(err) == codes.NotFound {
				reason = checkpoint.ReasonTaskNotReady
			}
			m.post(result(func(m *Master) {
				if m.ck.gen == gen && m.lc.Attempt() == attempt {
					m.ck.step(checkpoint.Event{Type: checkpoint.EventDecline, Time: m.now, ID: a.ID, Task: src, Reason: reason})
				}
			}))
		})
	}
}

// result is an I/O outcome applied on the loop, stamped with the time it
// arrived.
type resultFunc struct {
	at time.Time
	f  func(m *Master)
}

func (r resultFunc) when() time.Time { return r.at }
func (r resultFunc) apply(m *Master) { r.f(m) }

func result(f func(m *Master)) resultFunc { return resultFunc{at: time.Now(), f: f} }
