package exchange

import "sync"

// bufferPool hands out at most max buffers at a time. A buffer is
// outstanding from get until put; the producer blocks (backpressure) when
// all are outstanding. put is called by consumers (local Recycle) or by the
// remote sender after a frame went out, so the pool is locked; one lock per
// frame is fine because frames are batches of records.
type bufferPool struct {
	size  int
	max   int
	avail chan struct{} // cap 1; signaled whenever a buffer returns

	mu        sync.Mutex
	free      [][]byte
	allocated int // buffers created so far (<= max)
}

func newBufferPool(size, max int) *bufferPool {
	return &bufferPool{
		size:  size,
		max:   max,
		avail: make(chan struct{}, 1),
		free:  make([][]byte, 0, max),
	}
}

func (p *bufferPool) tryGet() ([]byte, bool) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return b, true
	}
	if p.allocated < p.max {
		p.allocated++
		p.mu.Unlock()
		return make([]byte, 0, p.size), true
	}
	p.mu.Unlock()
	return nil, false
}

// put returns a buffer. Buffers beyond the number handed out (a frame that
// did not come from this pool) are dropped so the pool never exceeds max.
func (p *bufferPool) put(b []byte) {
	p.mu.Lock()
	if len(p.free) < p.allocated {
		p.free = append(p.free, b[:0])
	}
	p.mu.Unlock()
	select {
	case p.avail <- struct{}{}:
	default:
	}
}

// outstanding is the number of buffers handed out and not yet returned.
func (p *bufferPool) outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.allocated - len(p.free)
}
