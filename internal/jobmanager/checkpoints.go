package jobmanager

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/pkg/checkpoint"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/jobspec"
	"github.com/flowrt/flow/pkg/keygroup"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// maxHistory bounds the checkpoint history kept per job.
const maxHistory = 100

// drainGrace is how long the tasks of a job stopped with --drain may take
// to finish by themselves before they are canceled.
const drainGrace = 30 * time.Second

// jobCheckpoints drives a job's checkpoints: the pure coordinator
// (pkg/checkpoint) decides, this driver executes its actions (trigger RPCs
// to source subtasks, `_metadata` writes, notifications, deletions) and
// feeds results back as events. All fields are guarded by jm.mu; I/O runs
// in goroutines tracked by jm.wg.
type jobCheckpoints struct {
	cfg      jobspec.Checkpoints
	storeURL string
	store    *storage.JobStore
	// coord is the current attempt's coordinator (nil when the attempt is
	// not running or checkpoints are disabled).
	coord   *checkpoint.Coordinator
	sources map[checkpoint.TaskID]bool
	// triggered[src] is closed once the last trigger sent to src returned:
	// the next trigger to src waits for it, so that a source hears
	// triggers in checkpoint order (a reordered pair would make its
	// barriers overtake each other downstream, subsuming the older one —
	// a stop's savepoint, say).
	triggered map[checkpoint.TaskID]chan struct{}
	// sourceEnded stops triggering once a source subtask finished: no
	// barrier can enter the graph through it any more.
	sourceEnded bool
	lastID      uint64
	retained    []uint64
	history     []*clusterv1.CheckpointInfo
	byID        map[uint64]*clusterv1.CheckpointInfo
	// restore is what the next attempt starts from: the latest completed
	// checkpoint, or the snapshot the job was submitted with.
	restore *restorePoint
	// savepoints in progress or done, by checkpoint id; nextSavepoint is the
	// request being triggered (consumed by ActionTrigger).
	savepoints    map[uint64]*savepointOp
	nextSavepoint *savepointOp
	// points are the retained completed checkpoints of the job's own
	// storage by id (what a restart may restore); initial is the snapshot
	// the job was submitted with (the oldest restore point).
	points  map[uint64]*restorePoint
	initial *restorePoint
	// corrupt are the checkpoints a restore found unreadable, with why;
	// they are never restored again. verifiedFor is the failed attempt whose
	// restart already chose its restore point; verifying is set while that
	// choice reads the storage.
	corrupt     map[int64]string
	verifiedFor int32
	verifying   bool
}

func newJobCheckpoints(cfg jobspec.Checkpoints) *jobCheckpoints {
	return &jobCheckpoints{cfg: cfg, byID: map[uint64]*clusterv1.CheckpointInfo{}, savepoints: map[uint64]*savepointOp{},
		points: map[uint64]*restorePoint{}, corrupt: map[int64]string{}}
}

// savepointOp is one savepoint request and its progress.
type savepointOp struct {
	id          uint64
	storage     *storage.Storage // the target directory
	name        string           // the savepoint's directory inside it
	dirURL      string
	stop, drain bool
	total       int
	acked       int
	done        bool
	err         error
	changed     chan struct{}
}

func (sp *savepointOp) notify() {
	close(sp.changed)
	sp.changed = make(chan struct{})
}

// failSavepointLocked ends a savepoint with err and deletes what it wrote.
func (jm *JobManager) failSavepointLocked(sp *savepointOp, err error) {
	sp.err = err
	sp.notify()
	jm.wg.Add(1)
	go func() {
		defer jm.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = sp.storage.DeleteDir(ctx, sp.name)
		sp.storage.Close()
	}()
}

type restorePoint struct {
	id          int64
	own         bool   // a checkpoint of the job's own checkpoint storage
	storageBase string // URL the handles' paths are relative to
	location    string // the snapshot's directory, relative to storageBase
	dirURL      string // the snapshot's directory as a URL
	md          *checkpointv1.CheckpointMetadata
}

// finalizeFailed records why completing checkpoint id failed (err nil:
// it did not), so the history says what broke.
func (c *jobCheckpoints) finalizeFailed(id uint64, err error) {
	if info := c.byID[id]; err != nil && info != nil && info.Failure == "" {
		info.Failure = err.Error()
	}
}

func (c *jobCheckpoints) enabled() bool { return c != nil && c.cfg.Interval > 0 && c.store != nil }

// openCheckpoints prepares a job's checkpointing: it opens the storage
// (I/O: call without jm.mu) and, for a job resubmitted under the same id,
// resumes from what is stored.
func (jm *JobManager) openCheckpoints(ctx context.Context, jobID string, cfg jobspec.Checkpoints) (*jobCheckpoints, error) {
	c := newJobCheckpoints(cfg)
	if cfg.Interval <= 0 {
		return c, nil
	}
	c.storeURL = cfg.Storage
	if c.storeURL == "" {
		c.storeURL = jm.opts.CheckpointStorage
	}
	s, err := storage.Open(ctx, c.storeURL, storage.WithLogger(jm.log))
	if err != nil {
		return nil, fmt.Errorf("checkpoint storage: %w", err)
	}
	store, completed, err := storage.OpenJob(ctx, s, jobID)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("checkpoint storage %s: %w", c.storeURL, err)
	}
	c.store = store
	for _, cp := range completed {
		c.retained = append(c.retained, uint64(cp.ID))
		c.lastID = max(c.lastID, uint64(cp.ID))
		c.points[uint64(cp.ID)] = &restorePoint{id: cp.ID, own: true, storageBase: s.URL(), location: cp.Dir, dirURL: cp.URL, md: cp.Metadata}
	}
	return c, nil
}

// recoverCheckpointHistory rebuilds, after a JobManager restart, the
// history of a stored job from its completed checkpoints in storage (the
// in-progress and failed ones of the previous JobManager are not kept), so
// `flowctl checkpoints` lists them and names the latest for
// --from-checkpoint. It lists the storage without jm.mu.
func (jm *JobManager) recoverCheckpointHistory(id string, g *jobgraphv1.JobGraph) {
	defer jm.wg.Done()
	cfg, err := jobspec.CheckpointsOf(g)
	if err != nil || cfg.Interval <= 0 {
		return
	}
	url := cfg.Storage
	if url == "" {
		url = jm.opts.CheckpointStorage
	}
	if url == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		select {
		case <-jm.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	s, err := storage.Open(ctx, url, storage.WithLogger(jm.log))
	if err != nil {
		jm.log.Warn("checkpoint history after restart", "job", id, "err", err)
		return
	}
	defer s.Close()
	all, err := storage.ListCompleted(ctx, s, id)
	if err != nil {
		jm.log.Warn("checkpoint history after restart", "job", id, "storage", url, "err", err)
		return
	}
	jm.mu.Lock()
	defer jm.mu.Unlock()
	j := jm.jobs[id]
	if j == nil || j.ck == nil || len(all) == 0 {
		return
	}
	c := j.ck
	for _, cp := range all {
		md, st := cp.Metadata, cp.Metadata.GetStats()
		info := &clusterv1.CheckpointInfo{
			Id: cp.ID, Status: clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, Path: cp.URL,
			TriggerTimeMs: md.GetTriggerTimeMs(), DurationMs: st.GetDurationMs(), StateSize: st.GetStateSize(),
			UploadedSize: st.GetUploadedSize(), MaxAlignmentMs: st.GetMaxAlignmentMs(),
		}
		if c.byID[uint64(cp.ID)] == nil {
			c.history = append(c.history, info)
			c.byID[uint64(cp.ID)] = info
		}
		if c.points[uint64(cp.ID)] == nil {
			c.points[uint64(cp.ID)] = &restorePoint{id: cp.ID, own: true, storageBase: s.URL(), location: cp.Dir, dirURL: cp.URL, md: cp.Metadata}
		}
	}
	sort.Slice(c.history, func(a, b int) bool { return c.history[a].GetId() < c.history[b].GetId() })
	if c.restore == nil {
		last := all[len(all)-1]
		c.restore = c.points[uint64(last.ID)]
	}
	jm.log.Info("checkpoint history recovered from storage", "job", id, "completed", len(all), "latest", c.restore.dirURL)
}

func (c *jobCheckpoints) close() {
	if c != nil && c.store != nil {
		c.store.Storage().Close()
	}
}

// startCoordinatorLocked starts checkpointing for the job's current attempt
// once it runs.
func (jm *JobManager) startCoordinatorLocked(j *job, now time.Time) {
	c := j.ck
	if c == nil || c.coord != nil || j.plan == nil {
		return
	}
	var tasks []checkpoint.TaskID
	c.sources = map[checkpoint.TaskID]bool{}
	for _, t := range j.plan.Tasks {
		for i := 0; i < t.Parallelism; i++ {
			id := checkpoint.TaskID{Vertex: t.ID, Subtask: i}
			tasks = append(tasks, id)
			if len(t.Inputs) == 0 {
				c.sources[id] = true
			}
		}
	}
	if c.store == nil {
		c.cfg.Interval = 0 // no storage: savepoints only
	}
	cfg := checkpoint.Config{
		Interval: c.cfg.Interval, MinPause: c.cfg.MinPause, Timeout: c.cfg.Timeout,
		MaxConcurrent: c.cfg.MaxConcurrent, TolerableFailures: c.cfg.TolerableFailures, Retain: c.cfg.Retain,
	}
	coord, err := checkpoint.New(cfg, tasks, now, checkpoint.Resume{LastID: c.lastID, Retained: c.retained})
	if err != nil {
		jm.log.Error("checkpoint coordinator", "job", j.d.GetSummary().GetJobId(), "err", err)
		return
	}
	c.coord = coord
	c.sourceEnded = false
}

// stopCoordinatorLocked ends the attempt's checkpointing; pending
// checkpoints are marked failed with reason.
func (jm *JobManager) stopCoordinatorLocked(j *job, reason string) {
	c := j.ck
	if c == nil || c.coord == nil {
		return
	}
	for _, id := range c.coord.Pending() {
		if info := c.byID[id]; info != nil && info.Status == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_IN_PROGRESS {
			info.Status = clusterv1.CheckpointStatus_CHECKPOINT_STATUS_FAILED
			info.Failure = reason
			jm.abortFilesLocked(j, id, nil)
		}
		if sp := c.savepoints[id]; sp != nil && !sp.done && sp.err == nil && sp.acked < sp.total {
			jm.failSavepointLocked(sp, fmt.Errorf("savepoint %d failed: %s", id, reason))
		}
	}
	c.retained = c.coord.Retained()
	c.coord = nil
}

// tickCheckpoints steps every running coordinator with the time.
func (jm *JobManager) tickCheckpoints(now time.Time) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if jm.closed {
		return
	}
	for _, id := range jm.order {
		j := jm.jobs[id]
		c := j.ck
		if c == nil || c.coord == nil || c.sourceEnded || j.d.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RUNNING {
			continue
		}
		jm.stepLocked(j, checkpoint.Event{Type: checkpoint.EventTick, Time: now})
	}
}

// stepLocked feeds one event to the job's coordinator and executes the
// resulting actions.
func (jm *JobManager) stepLocked(j *job, ev checkpoint.Event) {
	c := j.ck
	if c == nil || c.coord == nil {
		return
	}
	actions, err := c.coord.Step(ev)
	if err != nil {
		jm.log.Debug("checkpoint event rejected", "job", j.d.GetSummary().GetJobId(), "event", ev.Type, "id", ev.ID, "err", err)
		return
	}
	// Step's slice is reused by the next Step, and executing an action may
	// step again: copy first.
	for _, a := range append([]checkpoint.Action(nil), actions...) {
		jm.execLocked(j, a)
	}
}

func (jm *JobManager) execLocked(j *job, a checkpoint.Action) {
	c := j.ck
	sum := j.d.GetSummary()
	switch a.Type {
	case checkpoint.ActionTrigger:
		c.lastID = max(c.lastID, a.ID)
		info := &clusterv1.CheckpointInfo{
			Id: int64(a.ID), Status: clusterv1.CheckpointStatus_CHECKPOINT_STATUS_IN_PROGRESS,
			TriggerTimeMs: a.Time.UnixMilli(), Savepoint: a.Savepoint, Attempt: sum.GetAttempt(),
		}
		opts := &clusterv1.CheckpointOptions{
			Savepoint: a.Savepoint, Unaligned: c.cfg.Unaligned && !a.Savepoint,
			AlignedTimeoutMs: c.cfg.AlignedTimeout.Milliseconds(), Incremental: c.cfg.Incremental && !a.Savepoint,
		}
		if a.Savepoint {
			sp := c.nextSavepoint
			if sp == nil {
				jm.log.Error("savepoint triggered without a request", "job", sum.GetJobId(), "id", a.ID)
				return
			}
			sp.id, sp.total = a.ID, j.plan.TotalSubtasks()
			c.savepoints[a.ID] = sp
			info.Path = sp.dirURL
			opts.StorageBase, opts.Drain, opts.Stop = sp.dirURL, sp.drain, sp.stop && !sp.drain
		} else {
			info.Path = c.store.Storage().URLOf(c.store.Dir(int64(a.ID)))
			opts.StorageBase, opts.Location = c.store.Storage().URL(), c.store.Dir(int64(a.ID))
		}
		c.history = append(c.history, info)
		c.byID[a.ID] = info
		if len(c.history) > maxHistory {
			delete(c.byID, uint64(c.history[0].GetId()))
			c.history = c.history[1:]
		}
		jm.triggerSourcesLocked(j, a, opts)
	case checkpoint.ActionFinalize:
		md, err := jm.metadataLocked(j, a)
		if err != nil {
			jm.log.Warn("checkpoint metadata", "job", sum.GetJobId(), "id", a.ID, "err", err)
			c.finalizeFailed(a.ID, err)
			jm.stepLocked(j, checkpoint.Event{Type: checkpoint.EventFinalized, ID: a.ID, Err: err})
			return
		}
		if sp := c.savepoints[a.ID]; a.Savepoint && sp != nil {
			jobID, id := sum.GetJobId(), a.ID
			jm.wg.Add(1)
			go func() {
				defer jm.wg.Done()
				ctx, cancel := context.WithTimeout(jm.base, time.Minute)
				dir, err := sp.storage.Sub(sp.name)
				if err == nil {
					err = storage.VerifyFiles(ctx, dir, md)
				}
				if err == nil {
					err = sp.storage.WriteMetadata(ctx, sp.name, md)
				}
				cancel()
				jm.mu.Lock()
				defer jm.mu.Unlock()
				j := jm.jobs[jobID]
				if j != nil && j.ck == c && c.coord != nil {
					c.finalizeFailed(id, err)
					jm.stepLocked(j, checkpoint.Event{Type: checkpoint.EventFinalized, ID: id, Err: err})
					return
				}
				// Every task acknowledged, then the attempt ended (e.g. a
				// bounded job finished): the savepoint stands on its own.
				if err != nil {
					sp.err = fmt.Errorf("savepoint %d: write metadata: %w", id, err)
				} else {
					sp.done = true
				}
				sp.notify()
				sp.storage.Close()
			}()
			return
		}
		store, jobID, id := c.store, sum.GetJobId(), a.ID
		jm.wg.Add(1)
		go func() {
			defer jm.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := store.Complete(ctx, md)
			cancel()
			jm.mu.Lock()
			defer jm.mu.Unlock()
			if j := jm.jobs[jobID]; j != nil && j.ck == c {
				if err == nil {
					c.restore = &restorePoint{id: int64(id), own: true, storageBase: store.Storage().URL(), location: store.Dir(int64(id)), dirURL: store.Storage().URLOf(store.Dir(int64(id))), md: md}
					c.points[id] = c.restore
				} else {
					jm.log.Warn("checkpoint could not be completed", "job", jobID, "id", id, "err", err)
				}
				c.finalizeFailed(id, err)
				jm.stepLocked(j, checkpoint.Event{Type: checkpoint.EventFinalized, ID: id, Err: err})
			}
		}()
	case checkpoint.ActionComplete:
		if info := c.byID[a.ID]; info != nil {
			info.Status = clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED
			info.DurationMs = a.Time.Sub(a.TriggerTime).Milliseconds()
		}
		if c.coord != nil {
			c.retained = c.coord.Retained()
		}
		jm.log.Info("checkpoint completed", "job", sum.GetJobId(), "id", a.ID, "savepoint", a.Savepoint, "duration", a.Time.Sub(a.TriggerTime))
		jm.notifyTaskManagersLocked(j, int64(a.ID), true)
		if sp := c.savepoints[a.ID]; a.Savepoint && sp != nil {
			sp.done = true
			sp.notify()
			sp.storage.Close()
			switch {
			case sp.stop && sp.drain:
				// Drained sources ended their input at the savepoint: the
				// tasks finish by themselves once they hear of its
				// completion (sent above), committing their last output.
				// Cancel only if they do not.
				j.stoppedWith = sp.dirURL
				jm.persistLocked(j)
				jobID, attempt := sum.GetJobId(), sum.GetAttempt()
				time.AfterFunc(drainGrace, func() {
					jm.mu.Lock()
					defer jm.mu.Unlock()
					if j := jm.jobs[jobID]; j != nil && !jm.closed && j.d.GetSummary().GetAttempt() == attempt {
						jm.stopWithSavepointLocked(j, j.stoppedWith)
					}
				})
			case sp.stop:
				// The sources emit nothing after the savepoint: once every
				// subtask committed it, cancel them.
				jm.stopAfterCommitLocked(j, int64(a.ID), sp.dirURL)
			}
		}
	case checkpoint.ActionAbort:
		if info := c.byID[a.ID]; info != nil {
			info.Status = clusterv1.CheckpointStatus_CHECKPOINT_STATUS_FAILED
			if info.Failure == "" {
				info.Failure = a.Reason.String()
			} else {
				info.Failure = a.Reason.String() + ": " + info.Failure
			}
			info.DurationMs = time.Since(time.UnixMilli(info.GetTriggerTimeMs())).Milliseconds()
		}
		detail := ""
		if info := c.byID[a.ID]; info != nil {
			detail = info.GetFailure()
		}
		jm.log.Info("checkpoint aborted", "job", sum.GetJobId(), "id", a.ID, "savepoint", a.Savepoint, "reason", a.Reason, "detail", detail, "consecutive_failures", a.Failures)
		jm.notifyTaskManagersLocked(j, int64(a.ID), false)
		if sp := c.savepoints[a.ID]; a.Savepoint && sp != nil {
			detail := a.Reason.String()
			if info := c.byID[a.ID]; info != nil {
				detail = info.GetFailure()
			}
			jm.failSavepointLocked(sp, fmt.Errorf("savepoint %d failed: %s", a.ID, detail))
			return
		}
		jm.abortFilesLocked(j, a.ID, a.Acks)
	case checkpoint.ActionDiscard:
		if info := c.byID[a.ID]; info != nil {
			info.Status = clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED
		}
		delete(c.points, a.ID)
		store, id := c.store, int64(a.ID)
		jm.wg.Add(1)
		go func() {
			defer jm.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := store.Discard(ctx, id); err != nil {
				jm.log.Warn("discard checkpoint", "id", id, "err", err)
			}
		}()
	case checkpoint.ActionDiscardLate:
		jm.discardFilesLocked(j, a.ID, []checkpoint.Ack{{Task: a.Task, Handle: a.Handle}}, true)
	case checkpoint.ActionFailJob:
		reason := fmt.Sprintf("%d consecutive checkpoints failed (tolerableFailures is %d)", a.Failures, c.cfg.TolerableFailures)
		jm.taskFailedLocked(j, reason)
		jm.maybeCompleteLocked(j)
	}
}

// triggerSourcesLocked asks every source subtask to start the checkpoint.
func (jm *JobManager) triggerSourcesLocked(j *job, a checkpoint.Action, opts *clusterv1.CheckpointOptions) {
	c := j.ck
	sum := j.d.GetSummary()
	for src := range c.sources {
		s := subtaskOf(j, src.Vertex, int32(src.Subtask))
		tm, ok := jm.reg.lookup(s.GetTaskManagerId())
		if !ok || s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING {
			jm.stepLocked(j, checkpoint.Event{Type: checkpoint.EventDecline, ID: a.ID, Task: src, Reason: checkpoint.ReasonTaskNotReady})
			continue
		}
		req := &clusterv1.TriggerCheckpointRequest{
			Task:         &clusterv1.TaskID{JobId: sum.GetJobId(), Attempt: sum.GetAttempt(), Task: src.Vertex, Subtask: int32(src.Subtask)},
			CheckpointId: int64(a.ID), TimestampMs: a.Time.UnixMilli(), Options: opts,
		}
		client, jobID, src := tm.client, sum.GetJobId(), src
		if c.triggered == nil {
			c.triggered = map[checkpoint.TaskID]chan struct{}{}
		}
		prev, sent := c.triggered[src], make(chan struct{})
		c.triggered[src] = sent
		jm.wg.Add(1)
		go func() {
			defer jm.wg.Done()
			if prev != nil {
				<-prev // bounded: that RPC has its own timeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), jm.opts.RPCTimeout)
			_, err := client.TriggerCheckpoint(ctx, req)
			cancel()
			close(sent)
			if err == nil {
				return
			}
			jm.mu.Lock()
			defer jm.mu.Unlock()
			if j := jm.jobs[jobID]; j != nil && j.ck == c && j.d.GetSummary().GetAttempt() == req.GetTask().GetAttempt() {
				reason := checkpoint.ReasonDeclined
				if status.Code(err) == codes.NotFound {
					reason = checkpoint.ReasonTaskNotReady
				}
				jm.stepLocked(j, checkpoint.Event{Type: checkpoint.EventDecline, ID: a.ID, Task: src, Reason: reason})
			}
		}()
	}
}

// notifyTaskManagersLocked tells every TaskManager running the job's
// current attempt that a checkpoint completed or was aborted. Each
// notification is redelivered until the TaskManager took it (see
// deliverNotification).
func (jm *JobManager) notifyTaskManagersLocked(j *job, id int64, completed bool) {
	sum := j.d.GetSummary()
	req := &clusterv1.NotifyCheckpointRequest{JobId: sum.GetJobId(), Attempt: sum.GetAttempt(), CheckpointId: id, Completed: completed}
	for tmID, client := range jm.attemptClientsLocked(j) {
		jm.wg.Add(1)
		go func() {
			defer jm.wg.Done()
			_ = jm.deliverNotification(jm.base, tmID, client, req)
		}()
	}
}

// attemptClientsLocked returns the clients of the TaskManagers that run
// subtasks of the job's current attempt, by TaskManager id.
func (jm *JobManager) attemptClientsLocked(j *job) map[string]clusterv1.TaskExecutorServiceClient {
	out := map[string]clusterv1.TaskExecutorServiceClient{}
	for _, t := range j.d.GetTasks() {
		for _, s := range t.GetSubtasks() {
			if tm, ok := jm.reg.lookup(s.GetTaskManagerId()); ok {
				out[s.GetTaskManagerId()] = tm.client
			}
		}
	}
	return out
}

// deliverNotification sends a checkpoint notification to one TaskManager
// until it answers, retrying with backoff. It gives up only when the
// attempt is over, the TaskManager left (its subtasks are gone with it),
// ctx ends or the JobManager closes: a completion that reaches no sink
// would leave that sink's output uncommitted.
func (jm *JobManager) deliverNotification(ctx context.Context, tmID string, client clusterv1.TaskExecutorServiceClient, req *clusterv1.NotifyCheckpointRequest) error {
	delay := 50 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, jm.opts.RPCTimeout)
		if req.GetAwaitProcessed() {
			cctx, cancel = context.WithCancel(ctx) // bounded by ctx alone
		}
		_, err := client.NotifyCheckpoint(cctx, req)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		jm.log.Debug("notify checkpoint; retrying", "job", req.GetJobId(), "taskmanager", tmID, "id", req.GetCheckpointId(), "err", err)
		if !jm.stillDelivering(tmID, client, req) {
			return err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// stillDelivering reports whether a notification is still worth sending:
// the attempt runs and the TaskManager is the one it was sent to.
func (jm *JobManager) stillDelivering(tmID string, client clusterv1.TaskExecutorServiceClient, req *clusterv1.NotifyCheckpointRequest) bool {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	j := jm.jobs[req.GetJobId()]
	tm, ok := jm.reg.lookup(tmID)
	return !jm.closed && j != nil && j.d.GetSummary().GetAttempt() == req.GetAttempt() && !isTerminal(j.d.GetSummary().GetStatus()) &&
		ok && tm.client == client
}

// stopAfterCommitLocked ends a job stopped with savepoint id once every
// TaskManager reported that its subtasks processed the savepoint's
// completion (so every sink committed it), or after drainGrace.
func (jm *JobManager) stopAfterCommitLocked(j *job, id int64, path string) {
	sum := j.d.GetSummary()
	jobID, attempt := sum.GetJobId(), sum.GetAttempt()
	req := &clusterv1.NotifyCheckpointRequest{JobId: jobID, Attempt: attempt, CheckpointId: id, Completed: true, AwaitProcessed: true}
	clients := jm.attemptClientsLocked(j)
	j.stoppedWith = path
	jm.persistLocked(j)
	jm.wg.Add(1)
	go func() {
		defer jm.wg.Done()
		ctx, cancel := context.WithTimeout(jm.base, drainGrace)
		defer cancel()
		var wg sync.WaitGroup
		for tmID, client := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := jm.deliverNotification(ctx, tmID, client, req); err != nil {
					jm.log.Warn("stop with savepoint: a TaskManager did not confirm the commit", "job", jobID, "taskmanager", tmID, "savepoint", id, "err", err)
				}
			}()
		}
		wg.Wait()
		jm.mu.Lock()
		defer jm.mu.Unlock()
		if j := jm.jobs[jobID]; j != nil && !jm.closed && j.d.GetSummary().GetAttempt() == attempt {
			jm.stopWithSavepointLocked(j, path)
		}
	}()
}

// abortFilesLocked deletes what an unfinished checkpoint wrote.
func (jm *JobManager) abortFilesLocked(j *job, id uint64, acks []checkpoint.Ack) {
	jm.discardFilesLocked(j, id, acks, false)
}

// discardFilesLocked deletes the files of acks (and, unless late, the
// checkpoint's directory); late acks of a completed checkpoint keep what the
// checkpoint references.
func (jm *JobManager) discardFilesLocked(j *job, id uint64, acks []checkpoint.Ack, late bool) {
	c := j.ck
	if c.store == nil {
		return
	}
	var states []*checkpointv1.SubtaskState
	for _, a := range acks {
		req := &clusterv1.AcknowledgeCheckpointRequest{}
		if proto.Unmarshal(a.Handle, req) == nil {
			for _, st := range req.GetOperators() {
				states = append(states, st)
			}
		}
	}
	store := c.store
	jm.wg.Add(1)
	go func() {
		defer jm.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var err error
		if late {
			err = store.DiscardLate(ctx, int64(id), states...)
		} else {
			err = store.Abort(ctx, int64(id), states...)
		}
		if err != nil {
			jm.log.Debug("delete checkpoint files", "id", id, "late", late, "err", err)
		}
	}()
}

// metadataLocked assembles a checkpoint's metadata from its acks: per
// operator uid, the state of every subtask.
func (jm *JobManager) metadataLocked(j *job, a checkpoint.Action) (*checkpointv1.CheckpointMetadata, error) {
	sum := j.d.GetSummary()
	g := j.d.GetGraph()
	maxP := int32(g.GetMaxParallelism())
	if maxP == 0 {
		maxP = keygroup.DefaultMaxParallelism
	}
	md := &checkpointv1.CheckpointMetadata{
		FormatVersion: storage.FormatVersion, JobId: sum.GetJobId(), JobName: g.GetName(),
		CheckpointId: int64(a.ID), TriggerTimeMs: a.TriggerTime.UnixMilli(), CompletionTimeMs: time.Now().UnixMilli(),
		Savepoint: a.Savepoint, Graph: g, Stats: &checkpointv1.CheckpointStats{},
	}
	byUID := map[string]*checkpointv1.OperatorState{}
	for _, v := range g.GetVertices() {
		uid := v.GetUid()
		if uid == "" {
			uid = v.GetId()
		}
		op := &checkpointv1.OperatorState{Uid: uid, OperatorId: v.GetId(), Type: v.GetType(),
			Parallelism: int32(jobgraph.VertexParallelism(g, v)), MaxParallelism: maxP}
		byUID[uid] = op
		md.Operators = append(md.Operators, op)
	}
	info := j.ck.byID[a.ID]
	for _, ack := range a.Acks {
		if ack.Finished || len(ack.Handle) == 0 {
			continue
		}
		req := &clusterv1.AcknowledgeCheckpointRequest{}
		if err := proto.Unmarshal(ack.Handle, req); err != nil {
			return nil, fmt.Errorf("acknowledgement of %s: %w", ack.Task, err)
		}
		for uid, st := range req.GetOperators() {
			op := byUID[uid]
			if op == nil {
				return nil, fmt.Errorf("acknowledgement of %s carries state of unknown operator uid %q", ack.Task, uid)
			}
			op.Subtasks = append(op.Subtasks, st)
			md.Stats.StateSize += st.GetStateSize()
			md.Stats.UploadedSize += st.GetUploadedSize()
		}
		if t := req.GetTiming(); t != nil {
			md.Stats.MaxAlignmentMs = max(md.Stats.MaxAlignmentMs, t.GetAlignmentMs())
			md.Stats.MaxSyncMs = max(md.Stats.MaxSyncMs, t.GetSyncMs())
			md.Stats.MaxAsyncMs = max(md.Stats.MaxAsyncMs, t.GetAsyncMs())
		}
	}
	for _, op := range md.Operators {
		sort.Slice(op.Subtasks, func(x, y int) bool { return op.Subtasks[x].GetSubtask() < op.Subtasks[y].GetSubtask() })
	}
	md.Stats.DurationMs = time.Since(a.TriggerTime).Milliseconds()
	if info != nil {
		info.StateSize, info.UploadedSize, info.MaxAlignmentMs = md.Stats.StateSize, md.Stats.UploadedSize, md.Stats.MaxAlignmentMs
	}
	return md, nil
}

// ---------------------------------------------------------------- RPCs

func (jm *JobManager) AcknowledgeCheckpoint(ctx context.Context, req *clusterv1.AcknowledgeCheckpointRequest) (*clusterv1.AcknowledgeCheckpointResponse, error) {
	handle, err := proto.Marshal(req)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "acknowledgement: %v", err)
	}
	t := req.GetTask()
	jm.mu.Lock()
	defer jm.mu.Unlock()
	j := jm.jobs[t.GetJobId()]
	if j == nil || j.ck == nil || j.d.GetSummary().GetAttempt() != t.GetAttempt() {
		return &clusterv1.AcknowledgeCheckpointResponse{}, nil
	}
	id := uint64(req.GetCheckpointId())
	if info := j.ck.byID[id]; info != nil && req.GetTiming() != nil {
		tm := proto.Clone(req.GetTiming()).(*clusterv1.TaskCheckpointTiming)
		tm.Task, tm.Subtask, tm.AckTimeMs = t.GetTask(), t.GetSubtask(), time.Now().UnixMilli()
		info.Tasks = append(info.Tasks, tm)
	}
	if sp := j.ck.savepoints[id]; sp != nil && !sp.done && sp.err == nil {
		sp.acked++
		sp.notify()
	}
	timing := req.GetTiming()
	jm.stepLocked(j, checkpoint.Event{
		Type: checkpoint.EventAck, Time: time.Now(), ID: id,
		Task: checkpoint.TaskID{Vertex: t.GetTask(), Subtask: int(t.GetSubtask())}, Handle: handle,
		Stats: checkpoint.AckStats{
			SyncDuration: time.Duration(timing.GetSyncMs()) * time.Millisecond, AsyncDuration: time.Duration(timing.GetAsyncMs()) * time.Millisecond,
			AlignmentDuration: time.Duration(timing.GetAlignmentMs()) * time.Millisecond, StateSize: timing.GetStateSize(),
		},
	})
	return &clusterv1.AcknowledgeCheckpointResponse{}, nil
}

func (jm *JobManager) DeclineCheckpoint(ctx context.Context, req *clusterv1.DeclineCheckpointRequest) (*clusterv1.DeclineCheckpointResponse, error) {
	t := req.GetTask()
	jm.mu.Lock()
	defer jm.mu.Unlock()
	j := jm.jobs[t.GetJobId()]
	if j == nil || j.ck == nil || j.d.GetSummary().GetAttempt() != t.GetAttempt() {
		return &clusterv1.DeclineCheckpointResponse{}, nil
	}
	reason := checkpoint.ReasonDeclined
	if name, _, _ := strings.Cut(req.GetReason(), ":"); name != "" {
		if r, err := checkpoint.ParseReason(name); err == nil {
			reason = r
		}
	}
	id := uint64(req.GetCheckpointId())
	if info := j.ck.byID[id]; info != nil && info.Failure == "" {
		info.Failure = fmt.Sprintf("declined by %s/%d: %s", t.GetTask(), t.GetSubtask(), req.GetReason())
	}
	jm.stepLocked(j, checkpoint.Event{Type: checkpoint.EventDecline, Time: time.Now(), ID: id,
		Task: checkpoint.TaskID{Vertex: t.GetTask(), Subtask: int(t.GetSubtask())}, Reason: reason})
	return &clusterv1.DeclineCheckpointResponse{}, nil
}

func (jm *JobManager) ListCheckpoints(ctx context.Context, req *clusterv1.ListCheckpointsRequest) (*clusterv1.ListCheckpointsResponse, error) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	j, err := jm.lookup(req.GetJobId())
	if err != nil {
		return nil, err
	}
	resp := &clusterv1.ListCheckpointsResponse{}
	if j.ck == nil {
		return resp, nil
	}
	for i := len(j.ck.history) - 1; i >= 0; i-- {
		resp.Checkpoints = append(resp.Checkpoints, proto.Clone(j.ck.history[i]).(*clusterv1.CheckpointInfo))
	}
	if r := j.ck.restore; r != nil {
		resp.LatestCompletedPath = r.dirURL
	}
	return resp, nil
}

// ------------------------------------------------------------- restore

// restoreFor builds the restore section of one subtask's deployment: for
// every operator of its chain, the old subtask states it needs. With
// unchanged parallelism that is the state of the same subtask index; after
// rescaling it is every old subtask's state (the runtime keeps the key
// groups of its own range and its share of operator state).
func restoreFor(r *restorePoint, dep *clusterv1.TaskDeployment) *clusterv1.TaskRestore {
	if r == nil {
		return nil
	}
	out := &clusterv1.TaskRestore{CheckpointId: r.id, Location: r.location, StorageBase: r.storageBase, Operators: map[string]*clusterv1.RestoreOperator{}}
	byUID := map[string]*checkpointv1.OperatorState{}
	for _, op := range r.md.GetOperators() {
		byUID[op.GetUid()] = op
	}
	vertices := map[string]string{} // id -> uid
	for _, v := range dep.GetGraph().GetVertices() {
		uid := v.GetUid()
		if uid == "" {
			uid = v.GetId()
		}
		vertices[v.GetId()] = uid
	}
	sub := dep.GetId().GetSubtask()
	for _, opID := range dep.GetOperators() {
		uid := vertices[opID]
		old := byUID[uid]
		if old == nil || len(old.GetSubtasks()) == 0 {
			continue
		}
		ro := &clusterv1.RestoreOperator{}
		if old.GetParallelism() == dep.GetParallelism() {
			for _, st := range old.GetSubtasks() {
				if st.GetSubtask() == sub {
					ro.States = append(ro.States, st)
				}
			}
		} else {
			ro.States = append(ro.States, old.GetSubtasks()...)
		}
		out.Operators[uid] = ro
	}
	return out
}

// openRestore reads the checkpoint or savepoint a job is submitted with and
// checks that the job claims all of its state (I/O: call without jm.mu).
func openRestore(ctx context.Context, rawURL string, g *jobgraphv1.JobGraph, allowNonRestored bool) (*restorePoint, error) {
	sn, err := storage.OpenSnapshot(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("restore from %s: %w", rawURL, err)
	}
	defer sn.Close()
	uids := map[string]bool{}
	for _, v := range g.GetVertices() {
		uid := v.GetUid()
		if uid == "" {
			uid = v.GetId()
		}
		uids[uid] = true
	}
	var unclaimed []string
	for _, op := range sn.Metadata.GetOperators() {
		if !uids[op.GetUid()] && len(op.GetSubtasks()) > 0 && hasState(op) {
			unclaimed = append(unclaimed, op.GetUid())
		}
	}
	if len(unclaimed) > 0 && !allowNonRestored {
		return nil, fmt.Errorf("snapshot %s holds state of operator uid(s) %s that the job does not have: give the operators those uids, or pass --allow-non-restored-state to drop that state",
			sn.Dir, strings.Join(unclaimed, ", "))
	}
	r := &restorePoint{id: sn.Metadata.GetCheckpointId(), storageBase: sn.Files.URL(), dirURL: sn.Dir, md: sn.Metadata}
	if !sn.Metadata.GetSavepoint() {
		r.location = storage.CheckpointDir(sn.Metadata.GetJobId(), sn.Metadata.GetCheckpointId())
	}
	return r, nil
}

func hasState(op *checkpointv1.OperatorState) bool {
	for _, st := range op.GetSubtasks() {
		if len(st.GetKeyed()) > 0 || len(st.GetOperatorState()) > 0 || len(st.GetSourcePosition()) > 0 || len(st.GetInFlight()) > 0 {
			return true
		}
	}
	return false
}

// TriggerSavepoint takes a savepoint of a running job and streams its
// progress.
func (jm *JobManager) TriggerSavepoint(req *clusterv1.TriggerSavepointRequest, stream clusterv1.JobManagerService_TriggerSavepointServer) error {
	ctx := stream.Context()
	jobID := req.GetJobId()
	if err := jm.savepointPossible(jobID); err != nil {
		return err
	}
	target := req.GetTargetDir()
	if target == "" {
		target = jm.opts.SavepointDir
	}
	if target == "" {
		return status.Error(codes.InvalidArgument, "savepoint: no target directory: pass --dir URL, or start the JobManager with --savepoint-dir")
	}
	stor, err := storage.Open(ctx, target, storage.WithLogger(jm.log))
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "savepoint target %s: %v", target, err)
	}
	name := storage.NewSavepointDirName(jobID)
	sp := &savepointOp{storage: stor, name: name, dirURL: stor.URLOf(name), stop: req.GetStop(), drain: req.GetDrain(), changed: make(chan struct{})}

	jm.mu.Lock()
	j, err := jm.lookup(jobID)
	if err == nil {
		err = jm.savepointPossibleLocked(j)
	}
	if err != nil {
		jm.mu.Unlock()
		stor.Close()
		return err
	}
	j.ck.nextSavepoint = sp
	jm.stepLocked(j, checkpoint.Event{Type: checkpoint.EventSavepoint, Time: time.Now()})
	j.ck.nextSavepoint = nil
	jm.mu.Unlock()
	if sp.id == 0 {
		stor.Close()
		return status.Error(codes.FailedPrecondition, "savepoint: the checkpoint coordinator did not start it (is the job finishing?)")
	}
	var last *clusterv1.SavepointProgress
	for {
		jm.mu.Lock()
		p := &clusterv1.SavepointProgress{CheckpointId: int64(sp.id), Acknowledged: int32(sp.acked), Total: int32(sp.total), Done: sp.done}
		err, changed := sp.err, sp.changed
		jm.mu.Unlock()
		if err != nil {
			return status.Error(codes.Aborted, err.Error())
		}
		switch {
		case p.Done:
			p.Path, p.Message = sp.dirURL, "savepoint complete"
			if sp.stop {
				p.Message = "savepoint complete; stopping the job"
			}
		case last == nil:
			p.Message = "savepoint triggered"
		default:
			p.Message = "waiting for acknowledgements"
		}
		if last == nil || p.Acknowledged != last.Acknowledged || p.Done {
			if err := stream.Send(p); err != nil {
				return err
			}
			last = p
		}
		if p.Done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-jm.done:
			return status.Error(codes.Unavailable, "the JobManager is shutting down")
		}
	}
}

func (jm *JobManager) savepointPossible(jobID string) error {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	j, err := jm.lookup(jobID)
	if err != nil {
		return err
	}
	return jm.savepointPossibleLocked(j)
}

func (jm *JobManager) savepointPossibleLocked(j *job) error {
	st := j.d.GetSummary().GetStatus()
	if st != clusterv1.JobStatus_JOB_STATUS_RUNNING || j.ck == nil || j.ck.coord == nil {
		return status.Errorf(codes.FailedPrecondition, "savepoint: job %s is %s; savepoints need a RUNNING job", j.d.GetSummary().GetJobId(), shortStatus(st))
	}
	return nil
}

// cleanupCheckpointsLocked deletes a job's checkpoints once it FINISHED or
// was CANCELED, unless checkpoints.retainOnCancel keeps them (externalized
// checkpoints). A FAILED job keeps them: they are how it is recovered by
// hand (flowctl run --from-checkpoint). Savepoints live elsewhere and are
// never touched.
func (jm *JobManager) cleanupCheckpointsLocked(j *job) {
	c := j.ck
	st := j.d.GetSummary().GetStatus()
	if c == nil || c.store == nil || c.cfg.RetainOnCancel ||
		(st != clusterv1.JobStatus_JOB_STATUS_FINISHED && st != clusterv1.JobStatus_JOB_STATUS_CANCELED) {
		return
	}
	store, jobID := c.store, j.d.GetSummary().GetJobId()
	c.restore = nil
	jm.wg.Add(1)
	go func() {
		defer jm.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if n, err := store.Storage().DeleteDir(ctx, jobID); err != nil {
			jm.log.Warn("delete checkpoints of an ended job", "job", jobID, "err", err)
		} else {
			jm.log.Info("deleted the checkpoints of an ended job", "job", jobID, "files", n)
		}
	}()
}
