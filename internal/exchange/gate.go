package exchange

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Event is one thing read from an InputGate.
type Event struct {
	Channel int
	Frame   []byte // nil when End
	End     bool   // the channel's producer finished; each channel reports End exactly once
	// Overtaken is set for a priority frame (see InputGate.SetPriority)
	// that overtook frames already received on its channel: that many of
	// the channel's next frames were sent before it.
	Overtaken int
}

// inputChannel is one channel of a gate: local (reads a subpartition of
// this Manager directly) or remote (a gRPC stream).
type inputChannel interface {
	// poll returns the next frame or the end without blocking; more reports
	// that something else is already available after it. overtaken is the
	// number of queued frames a priority frame overtook.
	poll() (frame []byte, overtaken int, end, more, ok bool, err error)
	// recycle gives a polled frame back (to the producer pool or as credit).
	recycle(frame []byte)
	// peek visits the next n queued frames after any queued priority
	// frames, without taking them.
	peek(n int, fn func(frame []byte))
	// close stops the channel; it must not block on the producer.
	close()
	// String describes the channel for errors.
	String() string
}

// InputGate is a consumer subtask's reader over all its input channels.
// All methods except Available's channel are used by exactly one goroutine.
//
// Channels that have something to deliver sit in a FIFO ready queue (each at
// most once); Poll takes the head, returns one event and re-queues the
// channel at the tail if it has more: round robin across channels, O(1) per
// event, no scanning of idle channels.
type InputGate struct {
	m     *Manager
	chans []inputChannel
	avail chan struct{}

	// priority, when set, tells remote channels which received frames
	// overtake the frames queued before them (SetPriority).
	priority atomic.Pointer[func([]byte) bool]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // remote channel goroutines

	mu     sync.Mutex
	ready  indexRing
	queued []bool

	// consumer-owned
	blocked []bool
	parked  []bool // popped while blocked: re-queue on Unblock
	ended   []bool
	err     error
	closed  bool
}

// NumChannels is the number of input channels.
func (g *InputGate) NumChannels() int { return len(g.chans) }

// Available is signaled (cap-1 channel) when an event may have become available.
func (g *InputGate) Available() <-chan struct{} { return g.avail }

// markReady queues channel i (called by producers and stream goroutines).
func (g *InputGate) markReady(i int) {
	g.mu.Lock()
	if g.queued[i] {
		g.mu.Unlock()
		return
	}
	g.queued[i] = true
	g.ready.push(i)
	g.mu.Unlock()
	select {
	case g.avail <- struct{}{}:
	default:
	}
}

// Poll returns the next available event from any unblocked channel without
// blocking (ok=false when none). An error means a channel broke (producer
// lost, released, or never registered); it names the channel and is
// returned by every later call.
func (g *InputGate) Poll() (ev Event, ok bool, err error) {
	if g.err != nil {
		return Event{}, false, g.err
	}
	if g.closed {
		return Event{}, false, fmt.Errorf("exchange: poll input gate: %w", ErrClosed)
	}
	for {
		g.mu.Lock()
		i, has := g.ready.pop()
		if has {
			g.queued[i] = false
		}
		g.mu.Unlock()
		if !has {
			return Event{}, false, nil
		}
		if g.ended[i] {
			continue
		}
		if g.blocked[i] {
			g.parked[i] = true
			continue
		}
		frame, overtaken, end, more, got, err := g.chans[i].poll()
		if err != nil {
			g.err = fmt.Errorf("exchange: input channel %d (%s): %w", i, g.chans[i], err)
			return Event{}, false, g.err
		}
		if !got {
			continue
		}
		if more {
			g.requeue(i)
		}
		if end {
			g.ended[i] = true
			return Event{Channel: i, End: true}, true, nil
		}
		return Event{Channel: i, Frame: frame, Overtaken: overtaken}, true, nil
	}
}

// requeue puts i back at the tail without signaling (the consumer is awake).
func (g *InputGate) requeue(i int) {
	g.mu.Lock()
	if !g.queued[i] {
		g.queued[i] = true
		g.ready.push(i)
	}
	g.mu.Unlock()
}

// Recycle returns a frame obtained from Poll once the consumer is done with
// it: locally it goes back to the producer's pool, remotely it becomes credit.
func (g *InputGate) Recycle(channel int, frame []byte) {
	if channel < 0 || channel >= len(g.chans) || g.closed {
		return
	}
	g.chans[channel].recycle(frame)
}

// SetPriority installs the test for priority frames (unaligned checkpoint
// barriers). A priority frame received by a remote channel is delivered
// before the frames of that channel received earlier and not yet polled;
// Poll reports their number in Event.Overtaken (they follow it). Locally,
// the producer queues priority frames first (ResultPartition.EmitEvent), so
// nothing is overtaken at the gate. Set it before the first Poll; frames
// received before it is set are delivered in order. Safe for concurrent use.
func (g *InputGate) SetPriority(isPriority func(frame []byte) bool) {
	if isPriority == nil {
		g.priority.Store(nil)
		return
	}
	g.priority.Store(&isPriority)
}

// PeekQueued calls fn with the next n frames queued on a channel (after any
// queued priority frames), without taking them: used to copy the frames a
// priority frame overtook (Event.Overtaken) at once. fn must not keep the
// frames. It visits fewer when fewer are queued.
func (g *InputGate) PeekQueued(channel, n int, fn func(frame []byte)) {
	if channel < 0 || channel >= len(g.chans) || g.closed || n <= 0 {
		return
	}
	g.chans[channel].peek(n, fn)
}

// Block stops Poll from returning events of a channel (barrier alignment).
// Frames keep arriving up to the channel's credit.
func (g *InputGate) Block(channel int) {
	if channel < 0 || channel >= len(g.chans) {
		return
	}
	g.blocked[channel] = true
}

// Unblock resumes a blocked channel.
func (g *InputGate) Unblock(channel int) {
	if channel < 0 || channel >= len(g.chans) || !g.blocked[channel] {
		return
	}
	g.blocked[channel] = false
	if g.parked[channel] {
		g.parked[channel] = false
		g.markReady(channel)
	}
}

// Close releases the gate: cancels remote streams, detaches local channels
// and waits for the gate's goroutines to exit. Frames not yet recycled must
// not be used afterwards. Close is idempotent.
func (g *InputGate) Close() error {
	if g.closed {
		return nil
	}
	g.closed = true
	g.cancel()
	for _, c := range g.chans {
		c.close()
	}
	g.wg.Wait()
	return nil
}
