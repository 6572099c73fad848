package exchange

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	exchangev1 "github.com/flowrt/flow/proto/flow/exchange/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// prioritySlack is how many frames beyond its credit window a remote
// channel of a gate with a priority filter accepts: priority frames are
// sent without credit.
const prioritySlack = 4

// remoteChannel reads one subpartition of a producer in another TaskManager
// over an ExchangeService.Subscribe stream. One goroutine receives frames
// into a queue bounded by the credit window; another sends credit back as
// the consumer recycles frames (batched: once half the window is free).
type remoteChannel struct {
	g         *InputGate
	idx       int
	spec      ChannelSpec
	window    int32 // credit window = BuffersPerChannel
	threshold int32 // send credit once this many frames were recycled

	unsent    atomic.Int32  // recycled frames not yet granted back as credit
	creditSig chan struct{} // cap 1: unsent reached threshold

	mu sync.Mutex
	q  frameRing
	// prio: the first len(prio) frames of q are priority frames; prio[i]
	// is how many frames the i-th of them overtook.
	prio        []int
	held        int32    // frames received and not yet recycled (queued + polled)
	free        [][]byte // recycled receive buffers; free+held never exceed the window
	end         bool     // end received
	endReported bool
	err         error
}

func newRemoteChannel(g *InputGate, idx int, spec ChannelSpec) *remoteChannel {
	w := int32(g.m.opts.BuffersPerChannel)
	return &remoteChannel{
		g:         g,
		idx:       idx,
		spec:      spec,
		window:    w,
		threshold: max(1, w/2),
		creditSig: make(chan struct{}, 1),
	}
}

func (c *remoteChannel) String() string {
	return fmt.Sprintf("partition %s subpartition %d at %s", c.spec.Partition, c.spec.Subpartition, c.spec.Address)
}

func (c *remoteChannel) poll() ([]byte, int, bool, bool, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, 0, false, false, false, c.err
	}
	if b, ok := c.q.pop(); ok {
		overtaken := 0
		if len(c.prio) > 0 {
			overtaken = c.prio[0]
			c.prio = c.prio[1:]
		}
		return b, overtaken, false, c.q.len() > 0 || c.end, true, nil
	}
	if c.end && !c.endReported {
		c.endReported = true
		return nil, 0, true, false, true, nil
	}
	return nil, 0, false, false, false, nil
}

func (c *remoteChannel) peek(n int, fn func([]byte)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.q.each(len(c.prio), func(b []byte) {
		if n > 0 {
			fn(b)
			n--
		}
	})
}

// enqueue appends a received frame, or, for a priority frame, puts it
// after the priority frames already queued and before every other frame;
// c.mu is held.
func (c *remoteChannel) enqueue(f []byte, isPriority func([]byte) bool) {
	if isPriority == nil || !isPriority(f) {
		c.q.push(f)
		return
	}
	n := len(c.prio)
	c.q.insert(n, f)
	c.prio = append(c.prio, c.q.len()-n-1)
}

func (c *remoteChannel) recycle(frame []byte) {
	// A priority frame came without credit: it gives none back.
	priority := false
	if p := c.g.priority.Load(); p != nil && frame != nil {
		priority = (*p)(frame)
	}
	c.mu.Lock()
	if c.held > 0 {
		c.held--
		if frame != nil && len(c.free) < int(c.window) {
			c.free = append(c.free, frame[:0])
		}
	}
	c.mu.Unlock()
	if priority {
		return
	}
	if c.unsent.Add(1) >= c.threshold {
		select {
		case c.creditSig <- struct{}{}:
		default:
		}
	}
}

// close is a no-op: the gate cancels its context, which ends run.
func (c *remoteChannel) close() {}

func (c *remoteChannel) fail(err error) {
	c.mu.Lock()
	if c.err == nil && !c.endReported {
		c.err = err
	}
	c.mu.Unlock()
	c.g.markReady(c.idx)
}

// run owns the stream until the end is received, the stream breaks, or the
// gate closes.
func (c *remoteChannel) run() {
	defer c.g.wg.Done()
	m := c.g.m
	m.metrics.remoteChannelDelta(1)
	defer m.metrics.remoteChannelDelta(-1)

	ctx, cancel := context.WithCancel(c.g.ctx)
	defer cancel()
	// The watchdog cancels the stream when the producer side stays silent:
	// first for connection + registration (RegisterTimeout plus the liveness
	// margin), then between messages (producers send heartbeats when idle).
	var silent atomic.Bool
	watchdog := time.AfterFunc(m.opts.RegisterTimeout+m.opts.livenessTimeout, func() {
		silent.Store(true)
		cancel()
	})
	defer watchdog.Stop()

	var received bool
	err := c.stream(ctx, watchdog, &received)
	if err == nil {
		return
	}
	switch {
	case c.g.ctx.Err() != nil && !silent.Load():
		// Gate closed (nobody listens) or the context given to OpenInputGate ended.
		err = fmt.Errorf("input gate context ended: %w", context.Cause(c.g.ctx))
	case silent.Load() && !received:
		err = fmt.Errorf("%w: no answer from the producer TaskManager within %s (is it running and reachable? raise RegisterTimeout)", ErrPartitionNotFound, m.opts.RegisterTimeout+m.opts.livenessTimeout)
	case silent.Load():
		err = fmt.Errorf("%w: no message or heartbeat for %s", ErrProducerLost, m.opts.livenessTimeout)
	default:
		err = classify(err)
	}
	c.fail(err)
}

// classify maps a stream error to this package's sentinels.
func classify(err error) error {
	if errors.Is(err, ErrProtocol) || errors.Is(err, ErrClosed) {
		return err
	}
	switch status.Code(err) {
	case codes.NotFound:
		return fmt.Errorf("%w: %w", ErrPartitionNotFound, err)
	case codes.Aborted:
		return fmt.Errorf("%w: %w", ErrPartitionReleased, err)
	case codes.AlreadyExists:
		return fmt.Errorf("%w: %w", ErrAlreadyConsumed, err)
	case codes.InvalidArgument:
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	default:
		return fmt.Errorf("%w: %w", ErrProducerLost, err)
	}
}

func (c *remoteChannel) stream(ctx context.Context, watchdog *time.Timer, received *bool) error {
	m := c.g.m
	cc, err := m.conn(c.spec.Address)
	if err != nil {
		return err
	}
	st, err := exchangev1.NewExchangeServiceClient(cc).Subscribe(ctx,
		grpc.WaitForReady(true), grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.ForceCodecV2(frameCodec{}))
	if err != nil {
		return err
	}
	id := c.spec.Partition
	open := &exchangev1.ConsumerMessage{Msg: &exchangev1.ConsumerMessage_Open{Open: &exchangev1.Open{
		Id: &exchangev1.SubpartitionID{
			JobId: id.JobID, Attempt: id.Attempt, Task: id.Task, Subtask: id.Subtask,
			DownstreamTask: id.DownstreamTask, Subpartition: c.spec.Subpartition,
		},
		InitialCredit: c.window,
	}}}
	if err := st.Send(open); err != nil {
		return recvError(st, err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, stop := context.WithCancel(ctx)
	defer stop() // runs before wg.Wait
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.sendCredit(sctx, st)
	}()

	batch := &frameBatch{alloc: c}
	for {
		if err := st.RecvMsg(batch); err != nil {
			if batch.err != nil {
				return batch.err
			}
			if err == io.EOF {
				return fmt.Errorf("%w: stream ended without end of partition", ErrProducerLost)
			}
			return err
		}
		*received = true
		watchdog.Reset(m.opts.livenessTimeout)
		if len(batch.frames) == 0 && !batch.end {
			continue // ack or heartbeat
		}
		var isPriority func([]byte) bool
		if p := c.g.priority.Load(); p != nil {
			isPriority = *p
		}
		c.mu.Lock()
		for i, f := range batch.frames {
			c.enqueue(f, isPriority)
			batch.frames[i] = nil
		}
		c.end = c.end || batch.end
		c.mu.Unlock()
		c.g.markReady(c.idx)
		if batch.end {
			return nil
		}
	}
}

// frameBuffer implements frameAllocator: it takes a recycled buffer (or
// makes one) for a frame of n bytes, counting it as held, and fails when
// the producer sent beyond the credit window.
func (c *remoteChannel) frameBuffer(n int) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Priority frames (unaligned barriers) come without credit; a few of
	// them may be held beyond the window.
	limit := c.window
	if c.g.priority.Load() != nil {
		limit += prioritySlack
	}
	if c.held >= limit {
		return nil, fmt.Errorf("%w: producer sent frames beyond the credit window of %d", ErrProtocol, c.window)
	}
	c.held++
	for k := len(c.free); k > 0; k-- {
		b := c.free[k-1]
		c.free[k-1] = nil
		c.free = c.free[:k-1]
		if cap(b) >= n {
			return b[:n], nil
		}
	}
	return make([]byte, n, max(n, c.g.m.opts.BufferSize)), nil
}

// recvError returns the stream's real status when Send failed with io.EOF.
func recvError(st grpc.BidiStreamingClient[exchangev1.ConsumerMessage, exchangev1.ProducerMessage], err error) error {
	if err != io.EOF {
		return err
	}
	var msg exchangev1.ProducerMessage
	if rerr := st.RecvMsg(&msg); rerr != nil && rerr != io.EOF {
		return rerr
	}
	return fmt.Errorf("%w: stream closed by the producer", ErrProducerLost)
}

// sendCredit grants recycled frames back to the producer until ctx ends or
// the stream breaks (the receive loop then sees the error).
func (c *remoteChannel) sendCredit(ctx context.Context, st grpc.BidiStreamingClient[exchangev1.ConsumerMessage, exchangev1.ProducerMessage]) {
	credit := &exchangev1.ConsumerMessage_Credit{}
	msg := &exchangev1.ConsumerMessage{Msg: credit}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.creditSig:
		}
		n := c.unsent.Swap(0)
		if n <= 0 {
			continue
		}
		credit.Credit = n
		if err := st.Send(msg); err != nil {
			return
		}
	}
}

// conn returns the shared client connection to addr, creating it lazily.
func (m *Manager) conn(addr string) (*grpc.ClientConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("exchange manager closed: %w", ErrClosed)
	}
	if cc, ok := m.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, m.opts.DialOptions...)
	if err != nil {
		return nil, fmt.Errorf("%w: create client for %s (check the address and DialOptions): %w", ErrProducerLost, addr, err)
	}
	m.conns[addr] = cc
	return cc, nil
}
