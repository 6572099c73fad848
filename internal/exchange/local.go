package exchange

import (
	"fmt"
	"sync/atomic"
	"time"
)

// localChannel reads a subpartition of a partition registered with the same
// Manager, directly from its queue. Until the partition is registered the
// channel is pending in the Manager; registration attaches it, a timer fails it.
type localChannel struct {
	g    *InputGate
	idx  int
	spec ChannelSpec

	sp    atomic.Pointer[subpartition]
	err   atomic.Pointer[error]
	timer *time.Timer // registration timeout; guarded by Manager.mu
}

func (c *localChannel) String() string {
	return fmt.Sprintf("partition %s subpartition %d, local", c.spec.Partition, c.spec.Subpartition)
}

func (c *localChannel) notify() { c.g.markReady(c.idx) }

// bind attaches the channel to its now-registered partition.
func (c *localChannel) bind(p *ResultPartition) {
	sub := int(c.spec.Subpartition)
	if sub < 0 || sub >= len(p.subs) {
		c.fail(fmt.Errorf("subpartition %d out of range: partition %s has %d subpartitions", sub, p.id, len(p.subs)))
		return
	}
	sp := p.subs[sub]
	if err := sp.attach(c); err != nil {
		c.fail(err)
		return
	}
	c.sp.Store(sp)
	c.notify()
}

func (c *localChannel) fail(err error) {
	c.err.Store(&err)
	c.notify()
}

func (c *localChannel) poll() ([]byte, int, bool, bool, bool, error) {
	if e := c.err.Load(); e != nil {
		return nil, 0, false, false, false, *e
	}
	sp := c.sp.Load()
	if sp == nil {
		return nil, 0, false, false, false, nil
	}
	frame, end, more, ok, err := sp.pop()
	return frame, 0, end, more, ok, err
}

func (c *localChannel) recycle(frame []byte) {
	if sp := c.sp.Load(); sp != nil {
		sp.p.pool.put(frame)
	}
}

func (c *localChannel) close() {
	c.g.m.cancelPending(c)
	if sp := c.sp.Load(); sp != nil {
		sp.detach(false)
	}
}

func (c *localChannel) peek(n int, fn func([]byte)) {
	sp := c.sp.Load()
	if sp == nil {
		return
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.q.each(sp.prio, func(b []byte) {
		if n > 0 {
			fn(b)
			n--
		}
	})
}
