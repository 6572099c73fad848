package runtime

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// State backend types of the job graph's StateBackendConfig: the names of the
// statebackend.Factory registered by the heap and pebble packages (which
// this package imports, so both are always registered).
const (
	StateBackendHeap   = heap.Name
	StateBackendPebble = pebble.Name
)

// sweepBatch is how many (state, key group) pairs one idle step of the
// incremental TTL sweep cleans per backend.
const sweepBatch = 8

// stateBackend is the job's keyed state backend: the graph's effective
// configuration and the registered factory its type names.
type stateBackend struct {
	cfg     *jobgraphv1.StateBackendConfig
	factory statebackend.Factory
}

func newStateBackend(g *jobgraphv1.JobGraph) (stateBackend, error) {
	c, err := g.EffectiveStateBackendConfig()
	if err != nil {
		return stateBackend{}, err
	}
	f, err := statebackend.Lookup(c.GetType())
	if err != nil {
		return stateBackend{}, fmt.Errorf("stateBackend type %q is unknown: use %s: %w", c.GetType(), strings.Join(statebackend.Names(), " or "), statebackend.ErrUnknownBackend)
	}
	return stateBackend{cfg: c, factory: f}, nil
}

// operatorState is the state of one operator of the chain: its operator
// state store (every operator has one) and, for an operator on a keyed
// stream that asked for it in Open, its keyed backend. The task goroutine
// owns both; a snapshot step reaches them through task.operatorStates.
type operatorState struct {
	vi *vertexInfo
	// keyable: the operator stands on a keyed stream (its vertex has a
	// keyBy), so its context offers keyed state and timers.
	keyable bool
	keyed   statebackend.Backend
	ops     *statebackend.OperatorStore
	// backendType and dir describe keyed (dir is empty for heap).
	backendType string
	dir         string
	// metrics reports keyed to the registry's state collector
	// (statemetrics.go).
	metrics *stateEntry
}

// Keyed returns the operator's keyed backend (nil when it has none).
func (s *operatorState) Keyed() statebackend.Backend { return s.keyed }

// Operator returns the operator's operator-state store.
func (s *operatorState) Operator() *statebackend.OperatorStore { return s.ops }

// UID is the operator's uid, which snapshots are matched by.
func (s *operatorState) UID() string { return s.vi.uid() }

// operatorStates returns the state of every operator of the chain in chain
// order (source first, sink last). For the snapshot step of checkpoints.
func (t *task) operatorStates() []*operatorState {
	out := make([]*operatorState, 0, len(t.vertices))
	for _, vi := range t.vertices {
		if vi.state != nil {
			out = append(out, vi.state)
		}
	}
	return out
}

// openKeyedBackend creates the keyed backend of one operator
// (createKeyedBackend) and reports its metrics.
func (t *task) openKeyedBackend(st *operatorState) (statebackend.Backend, error) {
	be, err := t.createKeyedBackend(st)
	if err != nil {
		return nil, err
	}
	if err := t.addStateMetrics(st, be); err != nil {
		return nil, errors.Join(err, be.Close())
	}
	return be, nil
}

// createKeyedBackend creates the keyed backend of one operator with the
// factory the job graph names: in memory, or (an on-disk kind: Pebble) in
// a directory named after the operator's uid under the subtask's data
// dir. The key groups are the subtask's share of the job's max
// parallelism.
func (t *task) createKeyedBackend(st *operatorState) (statebackend.Backend, error) {
	f := t.sb.factory
	cfg := t.backendConfig(statebackend.Options{
		KeyGroups:      keygroup.RangeFor(t.maxPar, t.parallelism, t.subtask),
		MaxParallelism: t.maxPar,
		Clock:          t.env.Clock,
	})
	cfg.BlockCacheSize, cfg.MemtableSize, cfg.Compression = t.sb.cfg.GetBlockCacheSize(), t.sb.cfg.GetMemtableSize(), t.sb.cfg.GetCompression()
	if f.OnDisk() {
		if t.env.DataDir == "" {
			return nil, fmt.Errorf("the %s state backend needs a data directory: set TaskEnv.DataDir (the TaskManager's --data-dir)", f.Name())
		}
		cfg.Dir = filepath.Join(t.env.DataDir, "state", url.PathEscape(st.UID()))
		// Local state never outlives its task attempt: restored state comes
		// from checkpoints, so a leftover directory is stale.
		if err := os.RemoveAll(cfg.Dir); err != nil {
			return nil, fmt.Errorf("clear state directory %s: %w", cfg.Dir, err)
		}
	}
	if be, err := t.restoreKeyedBackend(st, f, cfg); be != nil || err != nil {
		return be, err
	}
	be, err := f.Open(cfg)
	if err != nil {
		return nil, err
	}
	st.backendType, st.dir = f.Name(), cfg.Dir
	t.log.Debug("opened keyed state backend", "operator", st.vi.id, "type", f.Name(), "dir", cfg.Dir, "keyGroups", cfg.KeyGroups.String())
	return be, nil
}

// backendConfig is what every keyed backend of the task shares: the
// TaskManager's block cache and the task's logger.
func (t *task) backendConfig(opts statebackend.Options) statebackend.Config {
	cfg := statebackend.Config{Options: opts, Logger: t.log}
	if t.env.StateCache != nil {
		cfg.SharedCache = t.env.StateCache
	}
	return cfg
}

// ---- timers ----

// errNoTimerHandler is wrapped when a timer fires for an operator that does
// not implement api.TimerHandler.
var errNoTimerHandler = errors.New("a timer fired but the operator does not implement api.TimerHandler: implement OnTimer or do not register timers")

// errChainFailed stops timer firing when records emitted by OnTimer failed
// the task (t.err holds the cause).
var errChainFailed = errors.New("the task failed while firing timers")

// fireTimer runs one timer through the link's operator (its key is current).
func (l *opLink) fireTimer(tm api.Timer) (err error) {
	t := l.t
	t.inTimer, t.timerAt = true, tm
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
		if err != nil && err != errChainFailed {
			err = fmt.Errorf("%s: %w", t.position(), err)
		}
		t.inTimer = false
	}()
	if l.timers == nil {
		return errNoTimerHandler
	}
	if err := l.timers.OnTimer(tm, l.next); err != nil {
		return err
	}
	if t.err != nil {
		return errChainFailed
	}
	return nil
}

// advanceEventTime fires the link's event-time timers up to ts (before the
// operator sees the watermark).
func (t *task) advanceEventTime(l *opLink, ts int64) {
	if err := l.keyed.AdvanceWatermark(ts, l.fire); err != nil {
		t.fail(fmt.Errorf("%s: event-time timers at watermark %d: %w", t.opName(l.vi), ts, err))
	}
}

// advanceProcessingTime fires every due processing-time timer of the chain.
func (t *task) advanceProcessingTime() {
	if len(t.keyedLinks) == 0 {
		return
	}
	now := t.env.Clock.Now().UnixMilli()
	for _, l := range t.keyedLinks {
		if err := l.keyed.AdvanceProcessingTime(now, l.fire); err != nil {
			t.fail(fmt.Errorf("%s: processing-time timers at %d: %w", t.opName(l.vi), now, err))
			return
		}
	}
}

// nextProcessingTimer returns the wall-clock time at which the earliest
// processing-time timer of the chain is due (zero: none). Timer timestamps
// are on the task's Clock; the wait is measured on it and slept in real
// time, so an injected clock that jumps ahead is noticed at the next wake-up.
func (t *task) nextProcessingTimer(now time.Time) time.Time {
	var next int64
	found := false
	for _, l := range t.keyedLinks {
		ts, ok, err := l.keyed.NextTimer(api.ProcessingTime)
		if err != nil {
			t.fail(fmt.Errorf("%s: next processing-time timer: %w", t.opName(l.vi), err))
			return time.Time{}
		}
		if ok && (!found || ts < next) {
			next, found = ts, true
		}
	}
	if !found {
		return time.Time{}
	}
	wait := time.Duration(next-t.env.Clock.Now().UnixMilli()) * time.Millisecond
	return now.Add(max(wait, 0))
}

// sweepIdle runs one step of the incremental TTL sweep of every keyed
// backend that has not completed a round since the task last processed
// input. It reports whether more sweeping is pending.
func (t *task) sweepIdle() bool {
	if t.swept || len(t.keyedLinks) == 0 {
		return false
	}
	pending := false
	for _, l := range t.keyedLinks {
		if l.swept {
			continue
		}
		done, err := l.keyed.SweepExpired(sweepBatch)
		if err != nil {
			t.fail(fmt.Errorf("%s: TTL sweep: %w", t.opName(l.vi), err))
			return false
		}
		if done {
			l.swept = true
		} else {
			pending = true
		}
	}
	if !pending {
		t.swept = true
	}
	return pending
}

// inputProcessed re-arms the idle sweep after new input.
func (t *task) inputProcessed() {
	if t.swept {
		t.swept = false
		for _, l := range t.keyedLinks {
			l.swept = false
		}
	}
}

// closeStates flushes and closes every keyed backend.
func (t *task) closeStates() []error {
	var errs []error
	for _, vi := range t.vertices {
		st := vi.state
		if st == nil || st.keyed == nil {
			continue
		}
		t.removeStateMetrics(st)
		if err := st.keyed.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close %s state backend: %w", t.opName(vi), st.backendType, err))
		}
		st.keyed = nil
	}
	return errs
}
