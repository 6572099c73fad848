package jobmaster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flowrt/flow/pkg/checkpoint"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// ErrNoSavepoint: the job cannot take a savepoint now (it is not RUNNING,
// or its coordinator did not start one).
var ErrNoSavepoint = errors.New("savepoint not possible")

// Savepoint is one savepoint request and its progress, read by the
// request's caller while the master updates it.
type Savepoint struct{ op *savepointOp }

// savepointOp is one savepoint request. The loop sets id and total before
// it answers the request; mu guards the progress.
type savepointOp struct {
	id          uint64
	total       int
	storage     *storage.Storage // the target directory
	name        string           // the savepoint's directory inside it
	dirURL      string
	stop, drain bool

	mu      sync.Mutex
	acked   int
	done    bool
	err     error
	changed chan struct{}
}

// Progress is a savepoint's progress; Changed is closed at the next
// change.
type Progress struct {
	ID           uint64
	Acknowledged int
	Total        int
	Done         bool
	Err          error
	Path         string
	Stop         bool
	Changed      <-chan struct{}
}

// Progress reports how far the savepoint got.
func (s Savepoint) Progress() Progress {
	sp := s.op
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return Progress{ID: sp.id, Acknowledged: sp.acked, Total: sp.total, Done: sp.done, Err: sp.err, Path: sp.dirURL, Stop: sp.stop, Changed: sp.changed}
}

func (sp *savepointOp) changedLocked() {
	close(sp.changed)
	sp.changed = make(chan struct{})
}

func (sp *savepointOp) unfinished() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return !sp.done && sp.err == nil && sp.acked < sp.total
}

func (sp *savepointOp) ack() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if !sp.done && sp.err == nil {
		sp.acked++
		sp.changedLocked()
	}
}

// finish ends the savepoint (err nil: it is complete) and releases its
// storage. Only the first call counts.
func (sp *savepointOp) finish(err error) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.done || sp.err != nil {
		return false
	}
	if err != nil {
		sp.err = err
	} else {
		sp.done = true
	}
	sp.changedLocked()
	return true
}

// writeMetadata checks that every file md names exists and writes the
// savepoint's `_metadata`. It does I/O.
func (sp *savepointOp) writeMetadata(ctx context.Context, md *checkpointv1.CheckpointMetadata) error {
	dir, err := sp.storage.Sub(sp.name)
	if err == nil {
		err = storage.VerifyFiles(ctx, dir, md)
	}
	if err == nil {
		err = sp.storage.WriteMetadata(ctx, sp.name, md)
	}
	return err
}

// TriggerSavepoint asks the job for a savepoint into target (its
// directory is created there), stopping the job afterwards if stop is set
// (drained first with drain). It returns once the coordinator triggered
// it; follow it with Progress.
func (m *Master) TriggerSavepoint(ctx context.Context, at time.Time, target *storage.Storage, stop, drain bool) (Savepoint, error) {
	name := storage.NewSavepointDirName(m.id)
	sp := &savepointOp{storage: target, name: name, dirURL: target.URLOf(name), stop: stop, drain: drain, changed: make(chan struct{})}
	reply := make(chan error, 1)
	if !m.post(savepointEvent{at: at, sp: sp, reply: reply}) {
		return Savepoint{}, ErrClosed
	}
	select {
	case err := <-reply:
		return Savepoint{op: sp}, err
	case <-ctx.Done():
		return Savepoint{}, ctx.Err()
	case <-m.done:
		return Savepoint{}, ErrClosed
	}
}

// startSavepoint triggers sp through the coordinator (on the loop).
func (c *Checkpoints) startSavepoint(sp *savepointOp) error {
	m := c.m
	if st := m.lc.Status(); st != clusterv1.JobStatus_JOB_STATUS_RUNNING || c.coord == nil {
		return fmt.Errorf("%w: job %s is %s; savepoints need a RUNNING job", ErrNoSavepoint, m.id, shortStatus(st))
	}
	c.nextSavepoint = sp
	c.step(checkpoint.Event{Type: checkpoint.EventSavepoint, Time: m.now})
	c.nextSavepoint = nil
	if sp.id == 0 {
		return fmt.Errorf("%w: the checkpoint coordinator did not start it (is the job finishing?)", ErrNoSavepoint)
	}
	return nil
}

// failSavepoint ends a savepoint with err and deletes what it wrote.
func (c *Checkpoints) failSavepoint(sp *savepointOp, err error) {
	if !sp.finish(err) {
		return
	}
	c.m.goIO(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, storageTimeout)
		defer cancel()
		_, _ = sp.storage.DeleteDir(ctx, sp.name)
		sp.storage.Close()
	})
}
