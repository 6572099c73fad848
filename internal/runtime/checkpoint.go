package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/barrier"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// ackTimeout bounds one Acknowledge or Decline call.
const ackTimeout = 30 * time.Second

// alignTick is how often a task with a pending aligned checkpoint and an
// aligned timeout steps the barrier machine with the time.
const alignTick = 10 * time.Millisecond

const modeAtLeastOnce = jobgraphv1.CheckpointMode_CHECKPOINT_MODE_AT_LEAST_ONCE

// barrierConfig maps the job's checkpoint settings (the graph's
// EffectiveCheckpointConfig) to the barrier machine's.
func barrierConfig(c *jobgraphv1.CheckpointConfig, channels int) barrier.Config {
	switch {
	case c.GetMode() == modeAtLeastOnce:
		return barrier.Config{Channels: channels, Mode: barrier.ModeAtLeastOnce}
	case c.GetUnaligned() && c.GetAlignedTimeout().AsDuration() > 0:
		return barrier.Config{Channels: channels, Mode: barrier.ModeAligned, AlignedTimeout: c.GetAlignedTimeout().AsDuration()}
	case c.GetUnaligned():
		return barrier.Config{Channels: channels, Mode: barrier.ModeUnaligned}
	}
	return barrier.Config{Channels: channels, Mode: barrier.ModeAligned}
}

// checkpointer is the checkpoint side of a task. The task goroutine owns
// every field except wg and what upload goroutines receive (immutable
// snapshot data).
type checkpointer struct {
	cfg     *jobgraphv1.CheckpointConfig // effective: every field set
	machine *barrier.Machine             // nil on source tasks
	actions []barrier.Action             // copy of the machine's last actions

	stores map[string]*storage.Storage // by URL, opened once per task

	pending map[int64]*pendingCheckpoint
	// overtaken[ch]: the next n data buffers of channel ch were overtaken by
	// the priority barrier of checkpoint id; when that checkpoint's snapshot
	// was taken before they are processed, they are its in-flight data.
	overtaken []overtake

	// keyed snapshotters by operator, created at the first snapshot.
	keyed map[*operatorState]*snapshot.Keyed
	// restoredKeyed: handles a Pebble backend was restored from natively.
	restoredKeyed map[*operatorState][]*checkpointv1.KeyedStateHandle

	upCtx    context.Context
	upCancel context.CancelFunc
	wg       sync.WaitGroup

	lastCompleted int64
	completed     []int64 // snapshot ids completed, for tests and logs
	// awaiting are the checkpoints this task uploaded whose completion or
	// abort it has not heard of yet; a finishing task waits for them.
	awaiting []int64
	// aborted are the aborts heard for checkpoints above lastCompleted (at
	// most maxPendingAborts). An abort can arrive before this task's
	// trigger or barrier of the same checkpoint (the coordinator aborts as
	// soon as one task declines, while triggers are still in flight): such
	// a checkpoint is declined, never awaited.
	aborted []int64
}

type overtake struct {
	id int64
	n  int
}

// pendingCheckpoint is one checkpoint between its first barrier (or
// trigger) and the start of its upload.
type pendingCheckpoint struct {
	id        int64
	ts        int64
	opts      *clusterv1.CheckpointOptions
	flags     byte
	synced    bool
	forwarded bool
	// aligned: the input side is complete (alignment done; for unaligned
	// snapshots, the in-flight data is complete).
	aligned   bool
	failed    error
	declined  bool
	alignment time.Duration
	syncDur   time.Duration
	ops       []pendingOp
	// inFlight[ch] holds the captured input buffers of channel ch
	// (in-flight data file body); outFlight the overtaken output buffers.
	inFlight  map[int][]byte
	outFlight []byte
}

type pendingOp struct {
	uid  string
	p    *snapshot.Pending
	head bool // the chain's first operator: owns the input in-flight data
	tail bool // the chain's last operator: owns the output in-flight data
}

func (t *task) setupCheckpoints() error {
	cfg, err := t.d.GetGraph().EffectiveCheckpointConfig()
	if err != nil {
		return err
	}
	t.ck = &checkpointer{cfg: cfg, stores: map[string]*storage.Storage{}, pending: map[int64]*pendingCheckpoint{},
		keyed: map[*operatorState]*snapshot.Keyed{}, restoredKeyed: map[*operatorState][]*checkpointv1.KeyedStateHandle{}}
	t.ck.upCtx, t.ck.upCancel = context.WithCancel(context.Background())
	return nil
}

// setupBarriers builds the barrier machine of a task with inputs (after
// its input gates opened).
func (t *task) setupBarriers() error {
	cfg := t.ck.cfg
	if t.source == nil && len(t.wm) > 0 {
		m, err := barrier.New(barrierConfig(cfg, len(t.wm)))
		if err != nil {
			return fmt.Errorf("checkpoint barriers: %w", err)
		}
		t.ck.machine = m
		t.ck.overtaken = make([]overtake, len(t.wm))
		for _, gs := range t.gates {
			gs.gate.SetPriority(isPriorityFrame)
		}
	}
	return nil
}

// stopCheckpoints ends the task's checkpointing: on failure or
// cancellation, uploads in flight are canceled; in every case the task
// waits for its upload goroutines (they use the task's data directory) and
// closes its storage.
func (t *task) stopCheckpoints(failed bool) {
	ck := t.ck
	if ck == nil {
		return
	}
	if failed {
		ck.upCancel()
	}
	ck.wg.Wait()
	ck.upCancel()
	for id, pc := range ck.pending {
		pc.discard()
		delete(ck.pending, id)
	}
	for _, s := range ck.stores {
		_ = s.Close()
	}
	ck.stores = nil
}

// storage returns the checkpoint storage at base, opened once per task.
func (t *task) storage(base string) (*storage.Storage, error) {
	if base == "" {
		return nil, errors.New("no checkpoint storage URL: set checkpoints.storage in the job or the JobManager's --checkpoint-storage")
	}
	if s := t.ck.stores[base]; s != nil {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(t.ctx, ackTimeout)
	defer cancel()
	s, err := storage.Open(ctx, base, storage.WithLogger(t.log))
	if err != nil {
		return nil, fmt.Errorf("open checkpoint storage %s: %w", base, err)
	}
	t.ck.stores[base] = s
	return s, nil
}

// ---- the mailbox ----

// drainControl handles every control message waiting in the mailbox
// without blocking.
func (t *task) drainControl() {
	if t.notifyC != nil {
		select {
		case <-t.notifyC:
			t.takeNotifications()
		default:
		}
	}
	if t.env.Control == nil {
		return
	}
	for t.err == nil {
		select {
		case m := <-t.env.Control:
			t.handleControl(m)
		default:
			return
		}
	}
}

func (t *task) handleControl(m any) {
	switch m := m.(type) {
	case TriggerCheckpoint:
		t.triggerCheckpoint(m)
	case *TriggerCheckpoint:
		t.triggerCheckpoint(*m)
	case NotifyCheckpoint:
		t.notifyCheckpoint(m)
	case *NotifyCheckpoint:
		t.notifyCheckpoint(*m)
	default:
		t.log.Warn("ignored unknown control message", "type", fmt.Sprintf("%T", m))
	}
}

// takeNotifications handles the completions and aborts waiting in
// env.Notifications, in checkpoint order.
func (t *task) takeNotifications() {
	t.notes = t.env.Notifications.Take(t.notes)
	for _, m := range t.notes {
		if t.err != nil {
			return
		}
		t.notifyCheckpoint(m)
	}
}

// decline tells the coordinator that the task cannot take checkpoint id.
// It runs in the background (the coordinator may be slow or gone).
func (t *task) decline(id int64, reason string) {
	t.log.Debug("declining checkpoint", "checkpoint", id, "reason", reason)
	if t.env.Checkpoints == nil {
		return
	}
	r := t.env.Checkpoints
	ctx := t.ck.upCtx
	t.ck.wg.Add(1)
	go func() {
		defer t.ck.wg.Done()
		cctx, cancel := context.WithTimeout(ctx, ackTimeout)
		defer cancel()
		if err := r.Decline(cctx, id, reason); err != nil && ctx.Err() == nil {
			t.log.Warn("decline checkpoint", "checkpoint", id, "err", err)
		}
	}()
}

// triggerCheckpoint takes checkpoint m.ID on a source task: the
// synchronous snapshot of the chain, the barrier on every output, then the
// upload in the background.
func (t *task) triggerCheckpoint(m TriggerCheckpoint) {
	switch {
	case t.source == nil:
		t.decline(m.ID, fmt.Sprintf("task %s is not a source: only sources are triggered", t.d.GetId().GetTask()))
		return
	case m.ID <= 0:
		t.log.Warn("ignored checkpoint trigger with invalid id", "checkpoint", m.ID)
		return
	case m.Options == nil:
		t.decline(m.ID, "the trigger carries no checkpoint options (storage location)")
		return
	case m.ID <= t.ck.lastCompleted:
		t.decline(m.ID, fmt.Sprintf("subsumed: checkpoint %d already completed", t.ck.lastCompleted))
		return
	case slices.Contains(t.ck.aborted, m.ID):
		t.log.Debug("ignored the trigger of an aborted checkpoint", "checkpoint", m.ID)
		return
	case t.drainID != 0:
		t.decline(m.ID, fmt.Sprintf("task-not-ready: the source ended its input for stop --drain (savepoint %d)", t.drainID))
		return
	case t.stopID != 0:
		t.decline(m.ID, fmt.Sprintf("task-not-ready: the source stopped for a stop with savepoint (savepoint %d)", t.stopID))
		return
	}
	drain := m.Options.GetDrain() && m.Options.GetSavepoint()
	if drain {
		// stop --drain: end the input first, so that event-time timers
		// and windows fire (here and downstream, the watermark travels
		// before the barrier) and the savepoint holds the state after
		// them. The source then waits for the savepoint's completion and
		// finishes (runSource).
		t.drainID = m.ID
		if t.outIdle {
			t.setOutIdle(false)
		}
		if t.lastWM < api.MaxWatermark {
			t.processWatermark(api.MaxWatermark)
		}
		if t.err != nil {
			return
		}
	}
	var flags byte
	if m.Options.GetSavepoint() {
		flags |= barrierSavepoint
	}
	if t.ck.cfg.GetMode() == modeAtLeastOnce {
		flags |= barrierAtLeastOnce
	} else if m.Options.GetUnaligned() && m.Options.GetAlignedTimeoutMs() <= 0 && !m.Options.GetSavepoint() {
		flags |= barrierUnaligned
	}
	pc := &pendingCheckpoint{id: m.ID, ts: m.TimestampMs, opts: m.Options, flags: flags, aligned: true}
	t.ck.pending[pc.id] = pc
	t.syncSnapshot(pc)
	if pc.failed != nil {
		t.failCheckpoint(pc, "declined: "+pc.failed.Error())
		if drain {
			t.fail(fmt.Errorf("task %s (subtask %d of %d): stop --drain: the source ended its input for savepoint %d but could not take it (the task fails so that the job restarts from its latest checkpoint): %w",
				t.d.GetId().GetTask(), t.subtask, t.parallelism, m.ID, pc.failed))
		}
		return
	}
	t.forwardBarrier(pc)
	if t.err != nil {
		return
	}
	if m.Options.GetStop() && m.Options.GetSavepoint() && !drain {
		// stop without --drain: nothing after the savepoint's barrier, so
		// that the sinks' output ends exactly at the savepoint.
		t.stopID = m.ID
		t.flushOutputs()
	}
	t.startUpload(pc)
}

// ---- barriers on inputs ----
