package exchange

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// notifier is told when a subpartition goes from having nothing to deliver
// to having something (a frame, its end, or a failure). Implementations
// must not block.
type notifier interface{ notify() }

// ResultPartition is a producer subtask's output towards one downstream task
// vertex: one FIFO queue (subpartition) per downstream consumer channel,
// fed from a bounded buffer pool. Its producing methods (RequestBuffer,
// TryRequestBuffer, Emit, Finish) are used by exactly one goroutine.
type ResultPartition struct {
	m    *Manager
	id   PartitionID
	pool *bufferPool
	subs []*subpartition

	finished bool // producer-owned

	done        chan struct{} // closed by Release
	releaseOnce sync.Once

	undelivered atomic.Int32  // subpartitions whose end has not been delivered
	consumed    chan struct{} // closed when undelivered reaches 0
}

func newResultPartition(m *Manager, id PartitionID, n int) *ResultPartition {
	o := &m.opts
	p := &ResultPartition{
		m:        m,
		id:       id,
		pool:     newBufferPool(o.BufferSize, n*o.BuffersPerChannel+o.FloatingBuffers),
		subs:     make([]*subpartition, n),
		done:     make(chan struct{}),
		consumed: make(chan struct{}),
	}
	for i := range p.subs {
		p.subs[i] = &subpartition{p: p, index: i}
	}
	p.undelivered.Store(int32(n))
	if n == 0 {
		close(p.consumed)
	}
	return p
}

// ID returns the partition's id.
func (p *ResultPartition) ID() PartitionID { return p.id }

// NumSubpartitions is the number of downstream consumer channels.
func (p *ResultPartition) NumSubpartitions() int { return len(p.subs) }

// RequestBuffer returns an empty (len 0) pooled buffer. It blocks while
// none is free — this is backpressure — until ctx ends or the partition is
// released.
func (p *ResultPartition) RequestBuffer(ctx context.Context) ([]byte, error) {
	if b, ok := p.pool.tryGet(); ok {
		return b, nil
	}
	start := time.Now()
	defer func() { p.m.metrics.backpressured(time.Since(start)) }()
	for {
		select {
		case <-p.pool.avail:
			if b, ok := p.pool.tryGet(); ok {
				return b, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("exchange: request buffer for partition %s: %w", p.id, ctx.Err())
		case <-p.done:
			return nil, fmt.Errorf("exchange: request buffer for partition %s: %w", p.id, ErrPartitionReleased)
		}
	}
}

// TryRequestBuffer is the non-blocking form of RequestBuffer.
func (p *ResultPartition) TryRequestBuffer() ([]byte, bool) {
	select {
	case <-p.done:
		return nil, false
	default:
	}
	return p.pool.tryGet()
}

// BufferAvailable is signaled (non-blocking send on a cap-1 channel)
// whenever a buffer returns to the pool. RequestBuffer consumes the same
// signal, so use one or the other from the producer goroutine.
func (p *ResultPartition) BufferAvailable() <-chan struct{} { return p.pool.avail }

// Emit queues a filled buffer (obtained from RequestBuffer, possibly grown
// by append) on a subpartition. Ownership passes: the buffer returns to the
// pool once delivered (remote: after it was sent; local: when the consumer
// recycles it).
func (p *ResultPartition) Emit(subpartition int, frame []byte) error {
	if subpartition < 0 || subpartition >= len(p.subs) {
		return fmt.Errorf("exchange: emit on partition %s: subpartition %d out of range [0,%d)", p.id, subpartition, len(p.subs))
	}
	if p.finished {
		return fmt.Errorf("exchange: emit on partition %s: %w", p.id, ErrPartitionFinished)
	}
	sp := p.subs[subpartition]
	sp.mu.Lock()
	if sp.failed != nil {
		sp.mu.Unlock()
		return fmt.Errorf("exchange: emit on partition %s: %w", p.id, sp.failed)
	}
	sp.q.push(frame)
	var r notifier
	if sp.q.len() == 1 {
		r = sp.reader
	}
	sp.mu.Unlock()
	if r != nil {
		r.notify()
	}
	p.m.metrics.sent(len(frame))
	return nil
}

// EmitEvent queues a copy of a small in-band event frame (a checkpoint
// barrier or cancellation marker) on a subpartition. The copy does not come
// from the pool, so EmitEvent never blocks on backpressure. With priority,
// the frame goes before every frame queued on the subpartition and not yet
// taken by its consumer (after earlier priority frames), and overtaken is
// called, in queue order, with each frame it overtook: they are delivered
// after it. overtaken runs under the subpartition's lock: copy the frame,
// do not keep it or call back into the partition.
func (p *ResultPartition) EmitEvent(subpartition int, frame []byte, priority bool, overtaken func(frame []byte)) error {
	if subpartition < 0 || subpartition >= len(p.subs) {
		return fmt.Errorf("exchange: emit event on partition %s: subpartition %d out of range [0,%d)", p.id, subpartition, len(p.subs))
	}
	if p.finished {
		return fmt.Errorf("exchange: emit event on partition %s: %w", p.id, ErrPartitionFinished)
	}
	// Pool-sized, so that the buffer, once recycled into the pool in place
	// of a pooled one, is as useful as the one it replaces.
	buf := append(make([]byte, 0, max(p.pool.size, len(frame))), frame...)
	sp := p.subs[subpartition]
	sp.mu.Lock()
	if sp.failed != nil {
		sp.mu.Unlock()
		return fmt.Errorf("exchange: emit event on partition %s: %w", p.id, sp.failed)
	}
	if priority {
		if overtaken != nil {
			sp.q.each(sp.prio, overtaken)
		}
		sp.q.insert(sp.prio, buf)
		sp.prio++
	} else {
		sp.q.push(buf)
	}
	var r notifier
	if sp.q.len() == 1 || priority {
		r = sp.reader
	}
	sp.mu.Unlock()
	if r != nil {
		r.notify()
	}
	p.m.metrics.sent(len(buf))
	return nil
}

// Finish marks end-of-partition on every subpartition after the frames
// already queued. Each consumer sees End for its channel once it has
// received them. The partition stays registered (and its frames
// deliverable) until Release; wait for Consumed before releasing a
// finished partition, or its consumers may see ErrPartitionReleased.
func (p *ResultPartition) Finish() error {
	if p.finished {
		return fmt.Errorf("exchange: finish partition %s: %w", p.id, ErrPartitionFinished)
	}
	select {
	case <-p.done:
		return fmt.Errorf("exchange: finish partition %s: %w", p.id, ErrPartitionReleased)
	default:
	}
	p.finished = true
	for _, sp := range p.subs {
		sp.mu.Lock()
		sp.finished = true
		r := sp.reader
		sp.mu.Unlock()
		if r != nil {
			r.notify()
		}
	}
	return nil
}

// Consumed is closed once every subpartition's end has been delivered to
// its consumer (handed to a local gate, or sent to a remote one): the
// moment a finished partition can be released without losing data.
func (p *ResultPartition) Consumed() <-chan struct{} { return p.consumed }

// Outstanding reports how many pooled buffers are currently out of the pool
// (held by the producer, queued, in flight or held by a local consumer).
// It never exceeds subpartitions*BuffersPerChannel + FloatingBuffers.
func (p *ResultPartition) Outstanding() int { return p.pool.outstanding() }

// Release drops queued frames and unregisters the partition. Consumers that
// have not received the end of a subpartition get ErrPartitionReleased. A
// blocked RequestBuffer returns. Release is idempotent and may be called
// from any goroutine.
func (p *ResultPartition) Release() {
	p.releaseOnce.Do(func() {
		p.m.unregister(p)
		close(p.done)
		for _, sp := range p.subs {
			sp.release()
		}
	})
}

// subpartition is one FIFO of frames towards one consumer channel. The
// producer pushes; exactly one reader (a local gate channel or a remote
// stream sender) pops.
type subpartition struct {
	p     *ResultPartition
	index int

	mu           sync.Mutex
	q            frameRing
	prio         int // priority frames at the head of q (EmitEvent)
	finished     bool
	endDelivered bool
	failed       error // set on release when the end can no longer be delivered
	reader       notifier
	attached     bool
}

func (sp *subpartition) release() {
	sp.mu.Lock()
	if !sp.endDelivered && !(sp.finished && sp.q.len() == 0) {
		sp.failed = ErrPartitionReleased
	}
	sp.q.clear(nil)
	sp.prio = 0
	r := sp.reader
	sp.mu.Unlock()
	if r != nil {
		r.notify()
	}
}

// attach makes r the subpartition's only reader. The caller must call
// r.notify() afterwards (once it is ready to pop): anything queued before
// the attach is not announced otherwise.
func (sp *subpartition) attach(r notifier) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.attached {
		return fmt.Errorf("subpartition %d of partition %s: %w", sp.index, sp.p.id, ErrAlreadyConsumed)
	}
	sp.attached = true
	sp.reader = r
	return nil
}

// detach removes the reader; if reattach, another reader may attach later
// (used when a remote stream broke before any frame was sent).
func (sp *subpartition) detach(reattach bool) {
	sp.mu.Lock()
	sp.reader = nil
	if reattach {
		sp.attached = false
	}
	sp.mu.Unlock()
}

// pop takes the next frame, or the end. more reports whether anything
// (frame or end) remains after it. ok is false when there is nothing yet.
func (sp *subpartition) pop() (frame []byte, end, more, ok bool, err error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.endDelivered {
		return nil, false, false, false, nil
	}
	if sp.failed != nil {
		return nil, false, false, false, sp.failed
	}
	if b, has := sp.q.pop(); has {
		if sp.prio > 0 {
			sp.prio--
		}
		return b, false, sp.q.len() > 0 || sp.finished, true, nil
	}
	if sp.finished {
		sp.deliverEnd()
		return nil, true, false, true, nil
	}
	return nil, false, false, false, nil
}

// popBatch appends up to max frames (stopping early once maxBytes is
// reached, but always at least one) to dst, preceded by every priority
// frame at the head of the queue, which need no credit (their number is
// returned as prio). end reports that the subpartition's end is included
// (after the frames).
func (sp *subpartition) popBatch(dst [][]byte, max, maxBytes int) (out [][]byte, prio int, end bool, err error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.endDelivered {
		return dst, 0, false, nil
	}
	if sp.failed != nil {
		return dst, 0, false, sp.failed
	}
	for ; sp.prio > 0; sp.prio-- {
		b, _ := sp.q.pop()
		dst = append(dst, b)
		prio++
	}
	bytes := 0
	for i := 0; i < max && bytes < maxBytes; i++ {
		b, has := sp.q.pop()
		if !has {
			break
		}
		if sp.prio > 0 {
			sp.prio--
		}
		dst = append(dst, b)
		bytes += len(b)
	}
	if sp.finished && sp.q.len() == 0 {
		sp.deliverEnd()
		return dst, prio, true, nil
	}
	return dst, prio, false, nil
}

// deliverEnd records the delivery of the end; sp.mu is held.
func (sp *subpartition) deliverEnd() {
	sp.endDelivered = true
	if sp.p.undelivered.Add(-1) == 0 {
		close(sp.p.consumed)
	}
}
