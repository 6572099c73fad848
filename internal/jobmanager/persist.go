package jobmanager

import (
	"sync"

	"google.golang.org/protobuf/proto"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// persister writes job records to the JobStore from one goroutine, off the
// JobManager's lock. persistLocked only marks a job dirty; the writer then
// takes jm.mu briefly to copy the dirty jobs' details and writes the copies
// without it. Updates that arrive while a write is in flight coalesce into
// the next one: a job whose hundreds of subtasks report RUNNING in a burst
// costs a few writes, not one fsync each under the lock that heartbeats
// need.
type persister struct {
	jm    *JobManager
	store JobStore

	// dirty and order are guarded by jm.mu.
	dirty map[string]bool
	order []string

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	// flushMu serializes write passes (the background loop and Close's
	// final flush).
	flushMu sync.Mutex
}

func newPersister(jm *JobManager, st JobStore) *persister {
	return &persister{jm: jm, store: st, dirty: map[string]bool{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// markLocked schedules the job's record for writing. Call with jm.mu held.
func (p *persister) markLocked(id string) {
	if !p.dirty[id] {
		p.dirty[id] = true
		p.order = append(p.order, id)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run writes dirty records until close is called.
func (p *persister) run() {
	defer close(p.done)
	for {
		select {
		case <-p.wake:
			p.flush()
		case <-p.stop:
			return
		}
	}
}

// flush writes every record marked dirty so far.
func (p *persister) flush() {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	jm := p.jm
	jm.mu.Lock()
	order := p.order
	p.order, p.dirty = nil, map[string]bool{}
	recs := make([]*clusterv1.JobDetails, 0, len(order))
	for _, id := range order {
		if j := jm.jobs[id]; j != nil {
			recs = append(recs, proto.Clone(j.d).(*clusterv1.JobDetails))
		}
	}
	jm.mu.Unlock()
	for _, d := range recs {
		if err := p.store.Save(d); err != nil {
			jm.log.Error("persist job", "job", d.GetSummary().GetJobId(), "store", p.store.String(), "err", err)
		}
	}
}

// close stops the writer after writing what is still dirty.
func (p *persister) close() {
	close(p.stop)
	<-p.done
	p.flush()
}
