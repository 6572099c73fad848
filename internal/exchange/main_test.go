package exchange

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newManager builds a Manager closed at the end of the test.
func newManager(t testing.TB, opts Options) *Manager {
	t.Helper()
	m, err := NewManager(opts)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// serve starts a real gRPC server for m on a loopback port and sets m's
// self address to it. It returns the server (stopped at cleanup).
func serve(t testing.TB, m *Manager, opts ...grpc.ServerOption) *grpc.Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := grpc.NewServer(opts...)
	m.RegisterService(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	m.SetSelfAddress(lis.Addr().String())
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return s
}

func addr(m *Manager) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.self
}

func pid(task string, subtask int32) PartitionID {
	return PartitionID{JobID: "job", Attempt: 1, Task: task, Subtask: subtask, DownstreamTask: "down"}
}

// frame encodes (producer, subpartition, seq) into buf, padded to size bytes.
func frame(buf []byte, producer, sub, seq, size int) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(producer))
	buf = binary.BigEndian.AppendUint32(buf, uint32(sub))
	buf = binary.BigEndian.AppendUint64(buf, uint64(seq))
	for len(buf) < size {
		buf = append(buf, byte(len(buf)))
	}
	return buf
}

func decode(f []byte) (producer, sub, seq int, err error) {
	if len(f) < 16 {
		return 0, 0, 0, fmt.Errorf("short frame of %d bytes", len(f))
	}
	return int(binary.BigEndian.Uint32(f)), int(binary.BigEndian.Uint32(f[4:])), int(binary.BigEndian.Uint64(f[8:])), nil
}

// produce emits n frames on every subpartition of p (interleaved), then
// finishes. It runs on its own goroutine in tests; errors go to errc.
func produce(ctx context.Context, p *ResultPartition, producer, n, size int) error {
	for seq := 0; seq < n; seq++ {
		for sub := 0; sub < p.NumSubpartitions(); sub++ {
			b, err := p.RequestBuffer(ctx)
			if err != nil {
				return err
			}
			if err := p.Emit(sub, frame(b, producer, sub, seq, size)); err != nil {
				return err
			}
		}
	}
	return p.Finish()
}

// drain polls g until every channel ended (or an error), recycling each
// frame after checking it with check. Safe to call from any goroutine.
func drain(g *InputGate, timeout time.Duration, check func(ch int, f []byte) error) error {
	ended := make([]bool, g.NumChannels())
	left := g.NumChannels()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for left > 0 {
		ev, ok, err := g.Poll()
		if err != nil {
			return err
		}
		if !ok {
			select {
			case <-g.Available():
			case <-deadline.C:
				return fmt.Errorf("timed out with %d channels not ended", left)
			}
			continue
		}
		if ev.End {
			if ended[ev.Channel] {
				return fmt.Errorf("channel %d ended twice", ev.Channel)
			}
			ended[ev.Channel] = true
			left--
			continue
		}
		if ended[ev.Channel] {
			return fmt.Errorf("frame on channel %d after its end", ev.Channel)
		}
		if check != nil {
			if err := check(ev.Channel, ev.Frame); err != nil {
				return err
			}
		}
		g.Recycle(ev.Channel, ev.Frame)
	}
	return nil
}

// pollOne waits up to timeout for one event.
func pollOne(t testing.TB, g *InputGate, timeout time.Duration) (Event, error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ev, ok, err := g.Poll()
		if err != nil || ok {
			return ev, err
		}
		select {
		case <-g.Available():
		case <-deadline.C:
			t.Fatalf("no event within %s", timeout)
		}
	}
}

// waitErr polls until Poll fails, recycling frames, and returns the error.
func waitErr(t testing.TB, g *InputGate, timeout time.Duration) error {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ev, ok, err := g.Poll()
		if err != nil {
			return err
		}
		if ok {
			if !ev.End {
				g.Recycle(ev.Channel, ev.Frame)
			}
			continue
		}
		select {
		case <-g.Available():
		case <-deadline.C:
			t.Fatalf("no error within %s", timeout)
		}
	}
}

// opens counts the Subscribe streams whose Open message reached a
// producer's server: install it with grpc.StreamInterceptor(o.intercept).
// Subscribe goes straight from reading Open to waiting for the partition.
type opens struct{ n atomic.Int32 }

func (o *opens) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &openCounting{ServerStream: ss, o: o})
}

type openCounting struct {
	grpc.ServerStream
	o    *opens
	seen bool
}

func (s *openCounting) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && !s.seen {
		s.seen = true
		s.o.n.Add(1)
	}
	return err
}

// endAtGate reports whether the end of channel i (and so every frame sent
// before it) has reached g: for a remote channel, received from the stream;
// for a local one, queued on the subpartition it reads.
func endAtGate(g *InputGate, i int) bool {
	switch c := g.chans[i].(type) {
	case *remoteChannel:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.end
	case *localChannel:
		sp := c.sp.Load()
		if sp == nil {
			return false
		}
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return sp.finished
	}
	return false
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func mustErrIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}
