package exchange

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// topology returns the producer and consumer Managers: the same one for
// local exchange, two served Managers (two TaskManagers) for remote.
func topology(t *testing.T, remote bool, opts Options) (prod, cons *Manager) {
	t.Helper()
	prod = newManager(t, opts)
	serve(t, prod)
	if !remote {
		return prod, prod
	}
	cons = newManager(t, opts)
	serve(t, cons)
	return prod, cons
}

func modes(t *testing.T, f func(t *testing.T, remote bool)) {
	t.Run("local", func(t *testing.T) { f(t, false) })
	t.Run("remote", func(t *testing.T) { f(t, true) })
}

// TestExactlyOnceInOrder runs producers x consumers all-to-all: every frame
// arrives exactly once, in order per channel, and End once per channel.
func TestExactlyOnceInOrder(t *testing.T) {
	modes(t, func(t *testing.T, remote bool) {
		prod, cons := topology(t, remote, Options{BufferSize: 64, BuffersPerChannel: 2, FloatingBuffers: 1})
		const producers, consumers, n = 4, 5, 300
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		parts := make([]*ResultPartition, producers)
		for i := range parts {
			p, err := prod.CreatePartition(pid("src", int32(i)), consumers)
			if err != nil {
				t.Fatal(err)
			}
			parts[i] = p
		}
		gates := make([]*InputGate, consumers)
		for j := range gates {
			chans := make([]ChannelSpec, producers)
			for i := range chans {
				chans[i] = ChannelSpec{Address: addr(prod), Partition: pid("src", int32(i)), Subpartition: int32(j)}
			}
			g, err := cons.OpenInputGate(ctx, chans)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			gates[j] = g
		}

		var wg sync.WaitGroup
		errs := make(chan error, producers+consumers)
		for i, p := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := produce(ctx, p, i, n, 100); err != nil {
					errs <- fmt.Errorf("producer %d: %w", i, err)
				}
			}()
		}
		counts := make([][]int, consumers)
		for j, g := range gates {
			counts[j] = make([]int, producers)
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := drain(g, 20*time.Second, func(ch int, f []byte) error {
					pr, sub, seq, err := decode(f)
					if err != nil {
						return err
					}
					if pr != ch || sub != j || seq != counts[j][ch] {
						return fmt.Errorf("consumer %d channel %d: got frame (producer %d, sub %d, seq %d), want (%d, %d, %d)", j, ch, pr, sub, seq, ch, j, counts[j][ch])
					}
					if len(f) != 100 {
						return fmt.Errorf("frame of %d bytes, want 100", len(f))
					}
					counts[j][ch]++
					return nil
				})
				if err != nil {
					errs <- fmt.Errorf("consumer %d: %w", j, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for j := range counts {
			for i, c := range counts[j] {
				if c != n {
					t.Errorf("consumer %d channel %d got %d frames, want %d", j, i, c, n)
				}
			}
		}
		for i, p := range parts {
			select {
			case <-p.Consumed():
			case <-time.After(5 * time.Second):
				t.Fatalf("partition %d not consumed", i)
			}
			if o := p.Outstanding(); o != 0 {
				t.Errorf("partition %d has %d buffers outstanding after full consumption", i, o)
			}
			p.Release()
		}
	})
}

// TestRoundRobin: with every channel holding frames, Poll cycles through
// the channels instead of draining one.
func TestRoundRobin(t *testing.T) {
	modes(t, func(t *testing.T, remote bool) {
		const chans, per = 3, 4
		prod, cons := topology(t, remote, Options{BufferSize: 32, BuffersPerChannel: per})
		specs := make([]ChannelSpec, chans)
		for i := range specs {
			p, err := prod.CreatePartition(pid("rr", int32(i)), 1)
			if err != nil {
				t.Fatal(err)
			}
			for seq := 0; seq < per; seq++ {
				b, _ := p.TryRequestBuffer()
				if err := p.Emit(0, frame(b, i, 0, seq, 16)); err != nil {
					t.Fatal(err)
				}
			}
			specs[i] = ChannelSpec{Address: addr(prod), Partition: pid("rr", int32(i))}
		}
		g, err := cons.OpenInputGate(context.Background(), specs)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if remote {
			// Wait until every remote channel holds its full window.
			eventually(t, 5*time.Second, "remote queues to fill", func() bool {
				for _, c := range g.chans {
					rc := c.(*remoteChannel)
					rc.mu.Lock()
					n := rc.q.len()
					rc.mu.Unlock()
					if n < per {
						return false
					}
				}
				return true
			})
		}
		var order []int
		for len(order) < chans*per {
			ev, err := pollOne(t, g, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			order = append(order, ev.Channel)
			g.Recycle(ev.Channel, ev.Frame)
		}
		// Each window of `chans` consecutive events covers every channel.
		for w := 0; w+chans <= len(order); w += chans {
			seen := map[int]bool{}
			for _, c := range order[w : w+chans] {
				seen[c] = true
			}
			if len(seen) != chans {
				t.Fatalf("poll order %v is not round robin", order)
			}
		}
	})
}

// TestBackpressureLocal: a consumer that never recycles stops the producer
// exactly at the pool bound; recycling resumes it.
func TestBackpressureLocal(t *testing.T) {
	const subs, per, floating = 2, 3, 2
	const bound = subs*per + floating
	m := newManager(t, Options{BufferSize: 16, BuffersPerChannel: per, FloatingBuffers: floating})
	p, err := m.CreatePartition(pid("bp", 0), subs)
	if err != nil {
		t.Fatal(err)
	}
	specs := []ChannelSpec{{Partition: pid("bp", 0), Subpartition: 0}, {Partition: pid("bp", 0), Subpartition: 1}}
	g, err := m.OpenInputGate(context.Background(), specs)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	for i := 0; i < bound; i++ {
		b, ok := p.TryRequestBuffer()
		if !ok {
			t.Fatalf("TryRequestBuffer failed after %d buffers, bound is %d", i, bound)
		}
		if len(b) != 0 || cap(b) < 16 {
			t.Fatalf("buffer len %d cap %d, want len 0 cap >= 16", len(b), cap(b))
		}
		if err := p.Emit(i%subs, append(b, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := p.TryRequestBuffer(); ok {
		t.Fatal("TryRequestBuffer succeeded beyond the bound")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = p.RequestBuffer(ctx)
	cancel()
	mustErrIs(t, err, context.DeadlineExceeded)

	// The consumer takes every frame but keeps them: still blocked.
	var held []Event
	for len(held) < bound {
		ev, err := pollOne(t, g, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ev)
	}
	if o := p.Outstanding(); o != bound {
		t.Fatalf("outstanding %d, want %d", o, bound)
	}
	if _, ok := p.TryRequestBuffer(); ok {
		t.Fatal("TryRequestBuffer succeeded while the consumer holds every buffer")
	}

	// A blocked RequestBuffer resumes when the consumer recycles.
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := p.RequestBuffer(ctx)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("RequestBuffer returned %v while no buffer is free", err)
	case <-time.After(20 * time.Millisecond):
	}
	g.Recycle(held[0].Channel, held[0].Frame)
	if err := <-got; err != nil {
		t.Fatalf("RequestBuffer after recycle: %v", err)
	}
	// Recycling signals BufferAvailable for producers that select on it.
	select {
	case <-p.BufferAvailable(): // drain a stale signal, if any
	default:
	}
	g.Recycle(held[1].Channel, held[1].Frame)
	select {
	case <-p.BufferAvailable():
	case <-time.After(time.Second):
		t.Fatal("Recycle did not signal BufferAvailable")
	}
	if _, ok := p.TryRequestBuffer(); !ok {
		t.Fatal("TryRequestBuffer failed after a recycle")
	}
}

// TestBackpressureRemote: across TaskManagers the consumer holds at most its
// credit and the producer at most its pool; recycling resumes the flow.
func TestBackpressureRemote(t *testing.T) {
	const per, floating = 4, 2
	const bound = per + floating
	prod, cons := topology(t, true, Options{BufferSize: 16, BuffersPerChannel: per, FloatingBuffers: floating})
	p, err := prod.CreatePartition(pid("bp", 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: addr(prod), Partition: pid("bp", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	rc := g.chans[0].(*remoteChannel)
	held := func() int {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return int(rc.held)
	}

	// Produce until blocked: bound buffers in the producer plus the credit
	// window at the consumer.
	emitted := 0
	ctx := context.Background()
	for emitted < bound+per {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := p.RequestBuffer(rctx)
		cancel()
		if err != nil {
			t.Fatalf("RequestBuffer after %d frames: %v", emitted, err)
		}
		if err := p.Emit(0, frame(b, 0, 0, emitted, 16)); err != nil {
			t.Fatal(err)
		}
		emitted++
	}
	eventually(t, 5*time.Second, "credit window to fill", func() bool { return held() == per })
	rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = p.RequestBuffer(rctx)
	cancel()
	mustErrIs(t, err, context.DeadlineExceeded)
	if _, ok := p.TryRequestBuffer(); ok {
		t.Fatal("TryRequestBuffer succeeded beyond the bound")
	}
	if o := p.Outstanding(); o != bound {
		t.Fatalf("producer outstanding %d, want %d", o, bound)
	}
	if h := held(); h != per {
		t.Fatalf("consumer holds %d frames, want its credit %d", h, per)
	}

	// Consume everything in order, recycling; the producer resumes.
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 3*per; i++ {
			b, err := p.RequestBuffer(ctx)
			if err != nil {
				done <- err
				return
			}
			if err := p.Emit(0, frame(b, 0, 0, emitted+i, 16)); err != nil {
				done <- err
				return
			}
		}
		done <- p.Finish()
	}()
	seq := 0
	if err := drain(g, 10*time.Second, func(_ int, f []byte) error {
		_, _, s, err := decode(f)
		if err != nil {
			return err
		}
		if s != seq {
			return fmt.Errorf("seq %d, want %d", s, seq)
		}
		seq++
		if h := held(); h > per {
			return fmt.Errorf("consumer holds %d frames, beyond its credit %d", h, per)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := emitted + 3*per; seq != want {
		t.Fatalf("received %d frames, want %d", seq, want)
	}
}

// TestConsumerBeforeProducer: a gate opened before the partition is
// registered waits for it.
func TestConsumerBeforeProducer(t *testing.T) {
	modes(t, func(t *testing.T, remote bool) {
		opts := Options{BufferSize: 16}
		var o opens
		prod := newManager(t, opts)
		serve(t, prod, grpc.StreamInterceptor(o.intercept))
		cons := prod
		if remote {
			cons = newManager(t, opts)
			serve(t, cons)
		}
		g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: addr(prod), Partition: pid("late", 0), Subpartition: 1}})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if _, ok, err := g.Poll(); ok || err != nil {
			t.Fatalf("Poll before registration: ok=%v err=%v", ok, err)
		}
		// The consumer waits at the producer before the partition exists.
		eventually(t, 5*time.Second, "the consumer waiting for the partition", func() bool {
			if remote {
				return o.n.Load() == 1
			}
			prod.mu.Lock()
			defer prod.mu.Unlock()
			return len(prod.pending[pid("late", 0)]) == 1
		})
		p, err := prod.CreatePartition(pid("late", 0), 2)
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- produce(context.Background(), p, 0, 10, 16) }()
		got := 0
		if err := drain(g, 10*time.Second, func(int, []byte) error { got++; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if got != 10 {
			t.Fatalf("got %d frames, want 10", got)
		}
		p.Release()
	})
}

// TestRegisterTimeout: a partition that never appears fails the gate with
// an error naming it.
func TestRegisterTimeout(t *testing.T) {
	modes(t, func(t *testing.T, remote bool) {
		prod, cons := topology(t, remote, Options{RegisterTimeout: 150 * time.Millisecond})
		missing := pid("never", 7)
		g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: addr(prod), Partition: missing}})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		start := time.Now()
		err = waitErr(t, g, 5*time.Second)
		mustErrIs(t, err, ErrPartitionNotFound)
		if !strings.Contains(err.Error(), missing.String()) {
			t.Fatalf("error %q does not name partition %s", err, missing)
		}
		if remote && !strings.Contains(err.Error(), addr(prod)) {
			t.Fatalf("error %q does not name address %s", err, addr(prod))
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Fatalf("failed after %s, before the register timeout", d)
		}
		// The error is sticky.
		if _, _, err2 := g.Poll(); err2 == nil {
			t.Fatal("second Poll returned no error")
		}
	})
}

// TestBlockUnblock: a blocked channel's events are withheld, others flow.
func TestBlockUnblock(t *testing.T) {
	modes(t, func(t *testing.T, remote bool) {
		prod, cons := topology(t, remote, Options{BufferSize: 16, BuffersPerChannel: 4})
		p, err := prod.CreatePartition(pid("blk", 0), 2)
		if err != nil {
			t.Fatal(err)
		}
		specs := []ChannelSpec{
			{Address: addr(prod), Partition: pid("blk", 0), Subpartition: 0},
			{Address: addr(prod), Partition: pid("blk", 0), Subpartition: 1},
		}
		g, err := cons.OpenInputGate(context.Background(), specs)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		g.Block(0)
		for seq := 0; seq < 3; seq++ {
			for sub := 0; sub < 2; sub++ {
				b, _ := p.TryRequestBuffer()
				if err := p.Emit(sub, frame(b, 0, sub, seq, 16)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := p.Finish(); err != nil {
			t.Fatal(err)
		}
		// Channel 1 delivers its frames and end; channel 0 stays silent.
		for i := 0; i < 4; i++ {
			ev, err := pollOne(t, g, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Channel != 1 {
				t.Fatalf("event from blocked channel 0: %+v", ev)
			}
			if !ev.End {
				g.Recycle(1, ev.Frame)
			}
		}
		eventually(t, 5*time.Second, "channel 0's frames and end at the gate", func() bool { return endAtGate(g, 0) })
		if ev, ok, err := g.Poll(); ok || err != nil {
			t.Fatalf("Poll with channel 0 blocked: %+v ok=%v err=%v", ev, ok, err)
		}
		g.Unblock(0)
		select {
		case <-g.Available():
		case <-time.After(time.Second):
			t.Fatal("Unblock did not signal Available")
		}
		for seq := 0; seq < 3; seq++ {
			ev, err := pollOne(t, g, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, _, s, _ := decode(ev.Frame)
			if ev.Channel != 0 || s != seq {
				t.Fatalf("after unblock got channel %d seq %d, want channel 0 seq %d", ev.Channel, s, seq)
			}
			g.Recycle(0, ev.Frame)
		}
		ev, err := pollOne(t, g, 5*time.Second)
		if err != nil || !ev.End || ev.Channel != 0 {
			t.Fatalf("want End on channel 0, got %+v err %v", ev, err)
		}
	})
}

// TestReleaseUnfinished: consumers of a released, unfinished partition get
// ErrPartitionReleased; a producer blocked in RequestBuffer returns.
func TestReleaseUnfinished(t *testing.T) {
	modes(t, func(t *testing.T, remote bool) {
		prod, cons := topology(t, remote, Options{BufferSize: 16, BuffersPerChannel: 1, FloatingBuffers: 1})
		p, err := prod.CreatePartition(pid("rel", 0), 1)
		if err != nil {
			t.Fatal(err)
		}
		g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: addr(prod), Partition: pid("rel", 0)}})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		blocked := make(chan error, 1)
		go func() {
			for {
				b, err := p.RequestBuffer(context.Background())
				if err != nil {
					blocked <- err
					return
				}
				if err := p.Emit(0, append(b, 1)); err != nil {
					blocked <- err
					return
				}
			}
		}()
		// The consumer is attached (a consumer that subscribes after the
		// release finds no partition: ErrPartitionNotFound) and every
		// pooled buffer is out (queued, or sent within the consumer's
		// credit): the producer blocks in RequestBuffer, or is about to.
		eventually(t, 5*time.Second, "the consumer attached and the producer's pool exhausted", func() bool {
			sp := p.subs[0]
			sp.mu.Lock()
			attached := sp.reader != nil
			sp.mu.Unlock()
			return attached && p.Outstanding() == 2
		})
		p.Release()
		select {
		case err := <-blocked:
			mustErrIs(t, err, ErrPartitionReleased)
		case <-time.After(5 * time.Second):
			t.Fatal("blocked producer did not return after Release")
		}
		mustErrIs(t, waitErr(t, g, 5*time.Second), ErrPartitionReleased)
		// Released partitions are unregistered: the id can be reused.
		p2, err := prod.CreatePartition(pid("rel", 0), 1)
		if err != nil {
			t.Fatalf("re-create after release: %v", err)
		}
		p2.Release()
	})
}

// TestProducerManagerClosed: the producer's TaskManager shutting down
// mid-stream shows up as a Poll error promptly.
func TestProducerManagerClosed(t *testing.T) {
	prod, cons := topology(t, true, Options{BufferSize: 16})
	p, err := prod.CreatePartition(pid("lost", 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: addr(prod), Partition: pid("lost", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	b, _ := p.TryRequestBuffer()
	if err := p.Emit(0, append(b, 1)); err != nil {
		t.Fatal(err)
	}
	ev, err := pollOne(t, g, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	g.Recycle(ev.Channel, ev.Frame)
	start := time.Now()
	if err := prod.Close(); err != nil {
		t.Fatal(err)
	}
	err = waitErr(t, g, 5*time.Second)
	mustErrIs(t, err, ErrPartitionReleased)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("error took %s", d)
	}
}

// TestProducerServerStopped: the producer's gRPC server dying (a lost
// TaskManager process) breaks the stream: ErrProducerLost, promptly.
func TestProducerServerStopped(t *testing.T) {
	prod := newManager(t, Options{BufferSize: 16})
	srv := serve(t, prod)
	cons := newManager(t, Options{})
	serve(t, cons)
	p, err := prod.CreatePartition(pid("lost", 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: addr(prod), Partition: pid("lost", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	b, _ := p.TryRequestBuffer()
	if err := p.Emit(0, append(b, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := pollOne(t, g, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	srv.Stop()
	err = waitErr(t, g, 5*time.Second)
	mustErrIs(t, err, ErrProducerLost)
	if !strings.Contains(err.Error(), addr(prod)) {
		t.Fatalf("error %q does not name the producer address", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("error took %s", d)
	}
}
