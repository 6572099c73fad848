package runtime

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/barrier"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/statebackend"
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

// stepMachine steps the barrier machine and executes its actions.
func (t *task) stepMachine(ev barrier.Event) {
	acts, err := t.ck.machine.Step(ev)
	if err != nil {
		t.fail(fmt.Errorf("task %s (subtask %d of %d): checkpoint barriers on channel %d: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, ev.Channel, err))
		return
	}
	if len(acts) == 0 {
		return
	}
	// Executing an action may step the machine again (an abort after a
	// failed snapshot): copy first.
	acts = append(t.ck.actions[:0], acts...)
	t.ck.actions = nil
	for _, a := range acts {
		t.execAction(a)
		if t.err != nil {
			return
		}
	}
	t.ck.actions = acts[:0]
}

// controlFrame handles a barrier or cancellation marker read on channel ch.
func (t *task) controlFrame(ch int, buf []byte, overtaken int) {
	b, err := decodeControl(buf)
	if err != nil {
		t.fail(fmt.Errorf("task %s (subtask %d of %d): channel %d after record %d: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, ch, t.recs[ch], err))
		return
	}
	if b.cancel {
		t.stepMachine(barrier.Event{Type: barrier.EventCancel, ID: uint64(b.id), Channel: ch, Time: time.Now()})
		return
	}
	if overtaken > 0 {
		t.ck.overtaken[ch] = overtake{id: b.id, n: overtaken}
	}
	if t.ck.pending[b.id] == nil && b.id > t.ck.lastCompleted {
		if pm := t.ck.machine.Pending(); len(pm) == 0 || int64(pm[len(pm)-1]) < b.id || t.ck.cfg.GetMode() == modeAtLeastOnce {
			t.ck.pending[b.id] = &pendingCheckpoint{id: b.id, ts: b.timestampMs, opts: b.opts, flags: b.flags}
		}
	}
	t.stepMachine(barrier.Event{Type: barrier.EventBarrier, ID: uint64(b.id), Channel: ch, Time: time.Now(),
		Options: barrier.Options{Savepoint: b.savepoint()}})
	if overtaken > 0 {
		// The snapshot is taken: copy the overtaken buffers now instead of
		// when they are processed, so the checkpoint does not wait for them.
		if pc := t.ck.pending[b.id]; pc != nil && pc.synced && pc.failed == nil && t.ck.overtaken[ch].id == b.id {
			gs := t.gateStateOf(ch)
			gs.gate.PeekQueued(ch-gs.offset, overtaken, func(buf []byte) { pc.capture(ch, buf) })
			t.ck.overtaken[ch] = overtake{}
			t.maybeUpload(pc)
		}
	}
	// A barrier the machine ignored (older than the pending one) leaves an
	// entry nobody completes.
	if pc := t.ck.pending[b.id]; pc != nil && !pc.synced && !t.machinePending(b.id) {
		delete(t.ck.pending, b.id)
	}
}

func (t *task) machinePending(id int64) bool {
	for _, p := range t.ck.machine.Pending() {
		if int64(p) == id {
			return true
		}
	}
	return false
}

// dataBuffer is called before a data buffer of channel ch is processed:
// it steps the barrier machine and captures the buffer when it is in-flight
// data of an unaligned snapshot.
func (t *task) dataBuffer(ch int, buf []byte) {
	ck := t.ck
	if ck.machine == nil {
		return
	}
	if o := &ck.overtaken[ch]; o.n > 0 {
		o.n--
		if pc := ck.pending[o.id]; pc != nil && pc.synced && pc.failed == nil {
			pc.capture(ch, buf)
			if o.n == 0 {
				defer t.maybeUpload(pc)
			}
		}
	}
	acts, err := ck.machine.Step(barrier.Event{Type: barrier.EventRecord, Channel: ch})
	if err != nil {
		t.fail(fmt.Errorf("task %s (subtask %d of %d): checkpoint barriers on channel %d: %w", t.d.GetId().GetTask(), t.subtask, t.parallelism, ch, err))
		return
	}
	for _, a := range acts {
		if a.Type == barrier.ActionCapture {
			if pc := ck.pending[int64(a.ID)]; pc != nil && pc.failed == nil {
				pc.capture(ch, buf)
			}
		}
	}
}

// capture appends a copy of an input buffer to the in-flight data of ch.
func (pc *pendingCheckpoint) capture(ch int, buf []byte) {
	if pc.inFlight == nil {
		pc.inFlight = map[int][]byte{}
	}
	pc.inFlight[ch] = appendInFlight(pc.inFlight[ch], 0, 0, buf)
}

// channelEnd steps the machine with the end of channel ch.
func (t *task) channelEndBarrier(ch int) {
	if t.ck.machine != nil {
		t.stepMachine(barrier.Event{Type: barrier.EventEnd, Channel: ch, Time: time.Now()})
	}
}

// tickBarriers drives the aligned timeout.
func (t *task) tickBarriers(now time.Time) {
	if t.ck.machine != nil && barrierConfig(t.ck.cfg, 1).AlignedTimeout > 0 && len(t.ck.machine.Pending()) > 0 {
		t.stepMachine(barrier.Event{Type: barrier.EventTick, Time: now})
	}
}

// barrierDeadline is when the barrier machine next needs a tick (zero:
// none).
func (t *task) barrierDeadline(now time.Time) time.Time {
	if t.ck == nil || t.ck.machine == nil || barrierConfig(t.ck.cfg, 1).AlignedTimeout <= 0 || len(t.ck.machine.Pending()) == 0 {
		return time.Time{}
	}
	return now.Add(alignTick)
}

func (t *task) execAction(a barrier.Action) {
	ck := t.ck
	id := int64(a.ID)
	switch a.Type {
	case barrier.ActionBlock:
		t.gateOf(a.Channel).Block(a.Channel - t.gateOffset(a.Channel))
	case barrier.ActionUnblockAll:
		for _, gs := range t.gates {
			for i := 0; i < gs.gate.NumChannels(); i++ {
				gs.gate.Unblock(i)
			}
		}
	case barrier.ActionStartSnapshot:
		pc := ck.pending[id]
		if pc == nil {
			t.fail(fmt.Errorf("task %s: barrier machine started snapshot %d without its barrier", t.d.GetId().GetTask(), id))
			return
		}
		pc.flags &^= barrierUnaligned
		if a.Kind == barrier.KindUnaligned {
			pc.flags |= barrierUnaligned
		}
		t.syncSnapshot(pc)
		if pc.failed != nil {
			// Abort after this batch of actions: the machine declines and
			// sends the cancellation marker downstream.
			defer t.stepMachine(barrier.Event{Type: barrier.EventAbort, ID: a.ID, Time: time.Now()})
		}
	case barrier.ActionForwardBarrier:
		if pc := ck.pending[id]; pc != nil && pc.failed == nil {
			t.forwardBarrier(pc)
			if t.err == nil {
				t.maybeUpload(pc)
			}
		}
	case barrier.ActionAlignmentDone:
		if pc := ck.pending[id]; pc != nil {
			pc.alignment = a.AlignmentDuration()
			pc.aligned = true
			t.maybeUpload(pc)
		}
	case barrier.ActionAbort:
		pc := ck.pending[id]
		reason := abortReason(a.Reason)
		if pc != nil && pc.failed != nil {
			reason = "declined: " + pc.failed.Error()
		}
		if pc == nil || !pc.declined {
			t.decline(id, reason)
		}
		if pc != nil {
			pc.discard()
			delete(ck.pending, id)
		}
		t.forwardCancel(id)
	}
}

func abortReason(r barrier.Reason) string {
	switch r {
	case barrier.ReasonSubsumed:
		return "subsumed: a newer checkpoint's barrier arrived first"
	case barrier.ReasonCanceled:
		return "canceled: an upstream task canceled the checkpoint"
	case barrier.ReasonTooManyPending:
		return "declined: too many checkpoints pending at once"
	}
	return "declined: aborted"
}

func (t *task) gateOffset(ch int) int { return t.gateStateOf(ch).offset }

func (t *task) gateOf(ch int) interface{ Block(int) } { return t.gateStateOf(ch).gate }

func (t *task) gateStateOf(ch int) *gateState {
	for i := len(t.gates) - 1; i >= 0; i-- {
		if ch >= t.gates[i].offset {
			return t.gates[i]
		}
	}
	return t.gates[0]
}

// ---- snapshots ----

// syncSnapshot takes the synchronous part of pc's snapshot for every
// operator of the chain: functions pre-commit (CheckpointedFunction), then
// keyed state, operator state and the source position are captured.
func (t *task) syncSnapshot(pc *pendingCheckpoint) {
	if pc.synced || pc.failed != nil {
		return
	}
	start := time.Now()
	pc.synced = true
	mode := snapshot.Checkpoint
	if pc.flags&barrierSavepoint != 0 {
		mode = snapshot.Savepoint
	}
	states := t.operatorStates()
	for i, st := range states {
		vi := st.vi
		if err := t.snapshotFunction(vi, pc.id); err != nil {
			pc.failed = err
			break
		}
		op := snapshot.Operator{Subtask: t.subtask, OperatorState: st.ops}
		if vi == t.srcVI {
			if ss, ok := t.source.(api.SplitSource); ok {
				// The splits go into the source's operator state, which
				// snapshot.Sync copies below.
				if err := t.snapshotSplits(ss, st); err != nil {
					pc.failed = err
					break
				}
			} else {
				pos, err := t.sourcePosition()
				if err != nil {
					pc.failed = err
					break
				}
				op.SourcePosition = pos
			}
		}
		if st.keyed != nil {
			k, err := t.keyedSnapshotter(st)
			if err != nil {
				pc.failed = fmt.Errorf("%s: %w", t.opName(vi), err)
				break
			}
			op.Keyed = k
		}
		p, err := snapshot.Sync(pc.id, mode, op)
		if err != nil {
			pc.failed = fmt.Errorf("%s: snapshot %d: %w", t.opName(vi), pc.id, err)
			break
		}
		pc.ops = append(pc.ops, pendingOp{uid: st.UID(), p: p, head: i == 0, tail: i == len(states)-1})
	}
	pc.syncDur = time.Since(start)
	if pc.failed != nil {
		t.log.Warn("checkpoint snapshot failed", "checkpoint", pc.id, "err", pc.failed)
		pc.discard()
	}
}

// snapshotFunction calls SnapshotState of an operator or sink that
// implements api.CheckpointedFunction.
func (t *task) snapshotFunction(vi *vertexInfo, id int64) (err error) {
	f, ok := t.userFunction(vi).(api.CheckpointedFunction)
	if !ok {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: snapshot state for checkpoint %d: panic: %v", t.opName(vi), id, p)
		}
	}()
	if err := f.SnapshotState(id); err != nil {
		return fmt.Errorf("%s: snapshot state for checkpoint %d: %w", t.opName(vi), id, err)
	}
	return nil
}

// splitsSpec is the operator state holding a SplitSource's splits.
var splitsSpec = api.OperatorStateSpec{Name: api.SourceSplitsState, Mode: api.SplitList, ValueCodec: api.BytesCodec().ID()}

// snapshotSplits stores the splits of a SplitSource in its operator state.
func (t *task) snapshotSplits(ss api.SplitSource, st *operatorState) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: splits: panic: %v", t.opName(t.srcVI), p)
		}
	}()
	splits, err := ss.Splits()
	if err != nil {
		return fmt.Errorf("%s: splits: %w", t.opName(t.srcVI), err)
	}
	l, err := st.ops.OperatorList(splitsSpec)
	if err != nil {
		return fmt.Errorf("%s: store splits: %w", t.opName(t.srcVI), err)
	}
	l.Update(splits)
	return nil
}

func (t *task) sourcePosition() (pos []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: position: panic: %v", t.opName(t.srcVI), p)
		}
	}()
	pos, err = t.source.Position()
	if err != nil {
		return nil, fmt.Errorf("%s: position: %w", t.opName(t.srcVI), err)
	}
	return pos, nil
}

// userFunction returns the source, operator or sink of a vertex of the
// chain.
func (t *task) userFunction(vi *vertexInfo) any {
	if vi == t.srcVI {
		return t.source
	}
	if t.sink != nil && vi == t.sink.vi {
		return t.sink.sink
	}
	for _, l := range t.links {
		if l.vi == vi {
			return l.op
		}
	}
	return nil
}

func (t *task) keyedSnapshotter(st *operatorState) (*snapshot.Keyed, error) {
	if k := t.ck.keyed[st]; k != nil {
		return k, nil
	}
	opts := snapshot.KeyedOptions{Restored: t.ck.restoredKeyed[st], Native: t.backendConfig(statebackend.Options{})}
	if st.dir != "" {
		// Native checkpoints (hard links) go next to the backend's files.
		opts.WorkDir = filepath.Join(t.env.DataDir, "snapshots", url.PathEscape(st.UID()))
	}
	k, err := snapshot.NewKeyed(st.keyed, opts)
	if err != nil {
		return nil, err
	}
	t.ck.keyed[st] = k
	return k, nil
}

func (pc *pendingCheckpoint) discard() {
	for _, op := range pc.ops {
		_ = op.p.Discard()
	}
	pc.ops = nil
	pc.inFlight, pc.outFlight = nil, nil
}

// failCheckpoint declines a checkpoint the task could not take and sends a
// cancellation marker downstream.
func (t *task) failCheckpoint(pc *pendingCheckpoint, reason string) {
	pc.declined = true
	t.decline(pc.id, reason)
	pc.discard()
	delete(t.ck.pending, pc.id)
	t.forwardCancel(pc.id)
}

// forwardBarrier emits pc's barrier on every output subpartition, after
// the records buffered before it. An unaligned barrier overtakes the
// buffers queued in the partition; they become part of the snapshot.
func (t *task) forwardBarrier(pc *pendingCheckpoint) {
	opts, err := proto.Marshal(pc.opts)
	if err != nil {
		t.fail(fmt.Errorf("encode barrier %d: %w", pc.id, err))
		return
	}
	frame := appendBarrier(nil, pc.id, pc.ts, pc.flags, opts)
	priority := pc.flags&barrierUnaligned != 0
	for oi, o := range t.outputs {
		o.flush()
		for sub := range o.subs {
			var visit func([]byte)
			if priority {
				visit = func(b []byte) { pc.outFlight = appendInFlight(pc.outFlight, oi, sub, b) }
			}
			if err := o.part.EmitEvent(sub, frame, priority, visit); err != nil {
				t.fail(fmt.Errorf("emit barrier %d to %q subpartition %d: %w", pc.id, o.part.ID().DownstreamTask, sub, err))
				return
			}
		}
	}
	t.flushAt = time.Time{}
	pc.forwarded = true
}

// forwardCancel emits a cancellation marker for checkpoint id on every
// output subpartition.
func (t *task) forwardCancel(id int64) {
	frame := appendCancel(nil, id)
	for _, o := range t.outputs {
		o.flush()
		for sub := range o.subs {
			if err := o.part.EmitEvent(sub, frame, false, nil); err != nil {
				t.fail(fmt.Errorf("emit cancellation of checkpoint %d to %q subpartition %d: %w", id, o.part.ID().DownstreamTask, sub, err))
				return
			}
		}
	}
}

// maybeUpload starts pc's upload once its snapshot is taken, its barrier
// forwarded and its input side complete: every barrier arrived (or its
// channel ended) and the buffers its priority barriers overtook were read.
func (t *task) maybeUpload(pc *pendingCheckpoint) {
	if !pc.synced || !pc.forwarded || !pc.aligned || pc.failed != nil || t.ck.pending[pc.id] != pc {
		return
	}
	for _, o := range t.ck.overtaken {
		if o.n > 0 && o.id == pc.id {
			return
		}
	}
	t.startUpload(pc)
}

// startUpload hands a synced and aligned checkpoint to a background
// goroutine that writes it to storage and acknowledges it.
func (t *task) startUpload(pc *pendingCheckpoint) {
	delete(t.ck.pending, pc.id)
	if t.env.Checkpoints == nil {
		pc.discard()
		return
	}
	store, err := t.storage(pc.opts.GetStorageBase())
	if err != nil {
		pc.failed = err
		t.failCheckpoint(pc, "declined: "+err.Error())
		return
	}
	up := &upload{
		id: pc.id, store: store, opts: pc.opts, subtask: t.subtask, ops: pc.ops, inFlight: pc.inFlight, outFlight: pc.outFlight,
		timing: &clusterv1.TaskCheckpointTiming{Task: t.d.GetId().GetTask(), Subtask: int32(t.subtask),
			AlignmentMs: pc.alignment.Milliseconds(), SyncMs: pc.syncDur.Milliseconds()},
	}
	pc.ops, pc.inFlight, pc.outFlight = nil, nil, nil
	if !slices.Contains(t.ck.aborted, pc.id) {
		t.ck.awaiting = append(t.ck.awaiting, pc.id)
	}
	r, log, ctx := t.env.Checkpoints, t.log, t.ck.upCtx
	t.ck.wg.Add(1)
	go func() {
		defer t.ck.wg.Done()
		up.run(ctx, r, log)
	}()
}

// upload is one checkpoint's background part in one subtask. It holds
// only immutable snapshot data.
type upload struct {
	id        int64
	store     *storage.Storage
	opts      *clusterv1.CheckpointOptions
	subtask   int
	ops       []pendingOp
	inFlight  map[int][]byte
	outFlight []byte
	timing    *clusterv1.TaskCheckpointTiming
}

func (u *upload) run(ctx context.Context, r CheckpointResponder, log interface {
	Warn(string, ...any)
}) {
	start := time.Now()
	states, err := u.write(ctx)
	u.timing.AsyncMs = time.Since(start).Milliseconds()
	cctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	if err != nil {
		if ctx.Err() != nil {
			return // the task ended
		}
		log.Warn("checkpoint upload failed", "checkpoint", u.id, "err", err)
		if derr := r.Decline(cctx, u.id, "declined: "+err.Error()); derr != nil && ctx.Err() == nil {
			log.Warn("decline checkpoint", "checkpoint", u.id, "err", derr)
		}
		return
	}
	for _, st := range states {
		u.timing.StateSize += st.GetStateSize()
		u.timing.UploadedSize += st.GetUploadedSize()
	}
	if err := r.Acknowledge(cctx, u.id, states, u.timing); err != nil && ctx.Err() == nil {
		log.Warn("acknowledge checkpoint", "checkpoint", u.id, "err", err)
	}
}

func (u *upload) write(ctx context.Context) (map[string]*checkpointv1.SubtaskState, error) {
	shared := ""
	if u.opts.GetIncremental() && !u.opts.GetSavepoint() {
		if job, _, ok := strings.Cut(u.opts.GetLocation(), "/"); ok {
			shared = storage.SharedDir(job)
		}
	}
	states := make(map[string]*checkpointv1.SubtaskState, len(u.ops))
	var err error
	for _, op := range u.ops {
		if err != nil {
			_ = op.p.Discard()
			continue
		}
		name := fmt.Sprintf("%s-%d", url.PathEscape(op.uid), u.subtask)
		var st *checkpointv1.SubtaskState
		st, err = op.p.Async(ctx, snapshot.Target{Store: u.store, Dir: u.opts.GetLocation(), SharedDir: shared, Name: name})
		if err != nil {
			err = fmt.Errorf("operator uid %q: %w", op.uid, err)
			continue
		}
		if op.head {
			chans := make([]int, 0, len(u.inFlight))
			for ch := range u.inFlight {
				chans = append(chans, ch)
			}
			sort.Ints(chans)
			for _, ch := range chans {
				h, werr := u.writeInFlight(ctx, fmt.Sprintf("%s-inflight-%d", name, ch), u.inFlight[ch])
				if werr != nil {
					err = werr
					break
				}
				st.InFlight = append(st.InFlight, &checkpointv1.InFlightHandle{Channel: int32(ch), File: h})
				st.StateSize += h.GetSize()
				st.UploadedSize += h.GetSize()
			}
		}
		if op.tail && len(u.outFlight) > 0 && err == nil {
			h, werr := u.writeInFlight(ctx, name+"-inflight-out", u.outFlight)
			if werr != nil {
				err = werr
			} else {
				st.InFlight = append(st.InFlight, &checkpointv1.InFlightHandle{Channel: outputInFlightChannel, File: h})
				st.StateSize += h.GetSize()
				st.UploadedSize += h.GetSize()
			}
		}
		states[op.uid] = st
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d: %w", u.id, err)
	}
	return states, nil
}

func (u *upload) writeInFlight(ctx context.Context, name string, body []byte) (*checkpointv1.FileHandle, error) {
	rel := path.Join(u.opts.GetLocation(), name)
	data := encodeInFlightFile(body)
	if err := u.store.WriteFile(ctx, rel, data); err != nil {
		return nil, fmt.Errorf("write in-flight data %s: %w", rel, err)
	}
	return &checkpointv1.FileHandle{Path: rel, Size: int64(len(data))}, nil
}

// ---- notifications ----

// notifyCheckpoint forwards a completion or abort to the keyed
// snapshotters and to every function of the chain that listens.
func (t *task) notifyCheckpoint(m NotifyCheckpoint) {
	if m.Completed {
		if m.ID <= t.ck.lastCompleted {
			return
		}
		t.ck.lastCompleted = m.ID
		t.ck.completed = append(t.ck.completed, m.ID)
	}
	if t.stopID != 0 && !m.Completed && m.ID == t.stopID {
		t.stopID = 0 // the stop failed: the job goes on
	}
	if t.drainID != 0 && !t.drained {
		switch {
		case m.Completed && m.ID >= t.drainID:
			t.drained = true // runSource finishes the task
		case !m.Completed && m.ID == t.drainID:
			t.fail(fmt.Errorf("task %s (subtask %d of %d): stop --drain: savepoint %d was aborted after the source ended its input (the task fails so that the job restarts from its latest checkpoint)",
				t.d.GetId().GetTask(), t.subtask, t.parallelism, m.ID))
			return
		}
	}
	for _, k := range t.ck.keyed {
		if m.Completed {
			k.NotifyComplete(m.ID)
		} else {
			k.NotifyAborted(m.ID)
		}
	}
	if !m.Completed && t.ck.machine != nil && t.machinePending(m.ID) {
		t.stepMachine(barrier.Event{Type: barrier.EventAbort, ID: uint64(m.ID), Time: time.Now()})
	}
	for _, vi := range t.vertices {
		l, ok := t.userFunction(vi).(api.CheckpointListener)
		if !ok {
			continue
		}
		t.callNotify(vi, l, m)
		if t.err != nil {
			return
		}
	}
	if m.Completed {
		t.ck.awaiting = slices.DeleteFunc(t.ck.awaiting, func(id int64) bool { return id <= m.ID })
		if t.env.Notifications != nil {
			t.env.Notifications.MarkProcessed(m.ID)
		}
	} else {
		t.ck.awaiting = slices.DeleteFunc(t.ck.awaiting, func(id int64) bool { return id == m.ID })
	}
	t.rememberAbort(m)
}

// rememberAbort keeps the ids of aborted checkpoints above the last
// completed one (see checkpointer.aborted).
func (t *task) rememberAbort(m NotifyCheckpoint) {
	last := t.ck.lastCompleted
	t.ck.aborted = slices.DeleteFunc(t.ck.aborted, func(id int64) bool { return id <= last })
	if m.Completed || m.ID <= last || slices.Contains(t.ck.aborted, m.ID) {
		return
	}
	if len(t.ck.aborted) == maxPendingAborts {
		t.ck.aborted = t.ck.aborted[1:]
	}
	t.ck.aborted = append(t.ck.aborted, m.ID)
}

func (t *task) callNotify(vi *vertexInfo, l api.CheckpointListener, m NotifyCheckpoint) {
	defer t.recoverUser(vi)
	var err error
	what := "complete"
	if m.Completed {
		err = l.NotifyCheckpointComplete(m.ID)
	} else {
		what = "aborted"
		err = l.NotifyCheckpointAborted(m.ID)
	}
	if err != nil {
		t.fail(fmt.Errorf("%s: checkpoint %d %s: %w", t.opName(vi), m.ID, what, err))
	}
}

// finalNotifyTimeout bounds how long a finishing task waits to hear how the
// checkpoints it uploaded ended.
const finalNotifyTimeout = 2 * time.Minute

// awaitNotifications keeps a finishing task alive until it heard whether
// each checkpoint it uploaded completed or was aborted, so that its
// two-phase-commit functions commit (or abort) their last transactions
// before they close. Only tasks with env.Notifications wait (the JobManager
// redelivers notifications until they arrive).
func (t *task) awaitNotifications() error {
	if t.env.Notifications == nil || t.ck == nil || len(t.ck.awaiting) == 0 {
		return t.err
	}
	limit := time.NewTimer(finalNotifyTimeout)
	defer limit.Stop()
	for len(t.ck.awaiting) > 0 && t.err == nil {
		select {
		case <-t.ctx.Done():
			return t.ctx.Err()
		case <-limit.C:
			t.log.Warn("finished without hearing how its last checkpoints ended", "checkpoints", t.ck.awaiting, "waited", finalNotifyTimeout)
			return t.err
		case <-t.notifyC:
			t.takeNotifications()
		case m := <-t.env.Control:
			switch m := m.(type) {
			case TriggerCheckpoint:
				t.decline(m.ID, "task-not-ready: the subtask is finishing")
			case NotifyCheckpoint:
				t.notifyCheckpoint(m)
			}
		}
	}
	return t.err
}

// declineRemaining declines the triggers left in the mailbox of a task
// that is finishing.
func (t *task) declineRemaining() {
	if t.notifyC != nil {
		t.takeNotifications()
	}
	if t.env.Control == nil {
		return
	}
	for {
		select {
		case m := <-t.env.Control:
			switch m := m.(type) {
			case TriggerCheckpoint:
				t.decline(m.ID, "task-not-ready: the subtask is finishing")
			case NotifyCheckpoint:
				t.notifyCheckpoint(m)
			}
		default:
			return
		}
	}
}
