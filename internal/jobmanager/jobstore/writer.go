package jobstore

import (
	"log/slog"
	"sync"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// Writer writes job records to a Store from one goroutine. Job
// masters hand it immutable snapshots of their records (mark); it keeps
// the newest per job and writes them without any job's involvement.
// Updates that arrive while a write is in flight coalesce into the next
// one: a job whose hundreds of subtasks report RUNNING in a burst costs a
// few writes, not one fsync each.
type Writer struct {
	store Store
	log   *slog.Logger

	// mu guards pending and order only (never held across a write).
	mu      sync.Mutex
	pending map[string]*clusterv1.JobDetails
	order   []string

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	// flushMu serializes write passes (the background loop and Close's
	// final flush).
	flushMu sync.Mutex
}

// NewWriter returns a writer to st; Run starts it.
func NewWriter(st Store, log *slog.Logger) *Writer {
	return &Writer{store: st, log: log, pending: map[string]*clusterv1.JobDetails{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// Mark schedules d, an immutable snapshot of a job's record, for writing.
func (p *Writer) Mark(d *clusterv1.JobDetails) {
	id := d.GetSummary().GetJobId()
	p.mu.Lock()
	if p.pending[id] == nil {
		p.order = append(p.order, id)
	}
	p.pending[id] = d
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run writes pending records until Close is called.
func (p *Writer) Run() {
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

// flush writes every record marked so far.
func (p *Writer) flush() {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.mu.Lock()
	recs := make([]*clusterv1.JobDetails, 0, len(p.order))
	for _, id := range p.order {
		recs = append(recs, p.pending[id])
	}
	p.order, p.pending = nil, map[string]*clusterv1.JobDetails{}
	p.mu.Unlock()
	for _, d := range recs {
		if err := p.store.Save(d); err != nil {
			p.log.Error("persist job", "job", d.GetSummary().GetJobId(), "store", p.store.String(), "err", err)
		}
	}
}

// Close stops the writer after writing what is still pending.
func (p *Writer) Close() {
	close(p.stop)
	<-p.done
	p.flush()
}
