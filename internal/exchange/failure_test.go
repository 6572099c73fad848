package exchange

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	exchangev1 "github.com/flowrt/flow/proto/flow/exchange/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// hungServer accepts a subscription, acknowledges it, then never sends
// again: a TaskManager that froze without closing its connections.
type hungServer struct {
	exchangev1.UnimplementedExchangeServiceServer
}

func (hungServer) Subscribe(st grpc.BidiStreamingServer[exchangev1.ConsumerMessage, exchangev1.ProducerMessage]) error {
	if _, err := st.Recv(); err != nil {
		return err
	}
	if err := st.Send(&exchangev1.ProducerMessage{}); err != nil {
		return err
	}
	<-st.Context().Done()
	return st.Context().Err()
}

func TestSilentProducerIsLost(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	exchangev1.RegisterExchangeServiceServer(s, hungServer{})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	defer func() { s.Stop(); <-done }()

	cons := newManager(t, Options{SelfAddress: "self", livenessTimeout: 300 * time.Millisecond})
	g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: lis.Addr().String(), Partition: pid("hung", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	start := time.Now()
	err = waitErr(t, g, 5*time.Second)
	mustErrIs(t, err, ErrProducerLost)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("declared lost after %s, before the liveness timeout", d)
	}
}

// TestHeartbeatsKeepIdleStreamAlive: an idle but healthy producer is not
// declared lost, because it sends heartbeats.
func TestHeartbeatsKeepIdleStreamAlive(t *testing.T) {
	opts := Options{heartbeatInterval: 30 * time.Millisecond, livenessTimeout: 200 * time.Millisecond}
	prod, cons := topology(t, true, opts)
	p, err := prod.CreatePartition(pid("idle", 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: addr(prod), Partition: pid("idle", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	time.Sleep(time.Second) // five liveness timeouts without data
	if _, ok, err := g.Poll(); ok || err != nil {
		t.Fatalf("idle Poll: ok=%v err=%v", ok, err)
	}
	if err := produce(context.Background(), p, 0, 3, 16); err != nil {
		t.Fatal(err)
	}
	if err := drain(g, 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
}

// TestUnreachableProducer: nothing listens at the address; the gate fails
// after RegisterTimeout plus the liveness margin, naming address and partition.
func TestUnreachableProducer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	cons := newManager(t, Options{SelfAddress: "self", RegisterTimeout: 100 * time.Millisecond, livenessTimeout: 100 * time.Millisecond})
	g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: dead, Partition: pid("gone", 3)}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	err = waitErr(t, g, 5*time.Second)
	mustErrIs(t, err, ErrPartitionNotFound)
	for _, want := range []string{dead, pid("gone", 3).String()} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not contain %q", err, want)
		}
	}
}

// TestGateCloseReleasesProducerSide: closing a consumer gate ends the remote
// stream; the producer's subpartition loses its reader and the server
// handler exits (goleak checks the goroutines at the end).
func TestGateCloseReleasesProducerSide(t *testing.T) {
	prod, cons := topology(t, true, Options{BufferSize: 16})
	p, err := prod.CreatePartition(pid("gc", 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: addr(prod), Partition: pid("gc", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.TryRequestBuffer()
	if err := p.Emit(0, append(b, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := pollOne(t, g, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	sp := p.subs[0]
	reader := func() notifier {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return sp.reader
	}
	if reader() == nil {
		t.Fatal("no reader attached while streaming")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "producer stream to detach", func() bool { return reader() == nil })
	if _, _, err := g.Poll(); err == nil {
		t.Fatal("Poll on a closed gate returned no error")
	}
}

// TestLocalPendingCancelledByClose: a local channel waiting for registration
// is dropped when its gate closes, and later registration does not touch it.
func TestLocalPendingCancelledByClose(t *testing.T) {
	m := newManager(t, Options{})
	g, err := m.OpenInputGate(context.Background(), []ChannelSpec{{Partition: pid("later", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	n := len(m.pending)
	m.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d partitions still have pending channels after gate close", n)
	}
	p, err := m.CreatePartition(pid("later", 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	// Not consumed by the closed gate: a new gate can read it.
	g2, err := m.OpenInputGate(context.Background(), []ChannelSpec{{Partition: pid("later", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := drain(g2, 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
}

func TestAPIErrors(t *testing.T) {
	if _, err := NewManager(Options{BuffersPerChannel: -1}); err == nil {
		t.Fatal("negative BuffersPerChannel accepted")
	}
	m := newManager(t, Options{BufferSize: 8})
	p, err := m.CreatePartition(pid("e", 0), 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreatePartition(pid("e", 0), 2); err == nil {
		t.Fatal("duplicate partition accepted")
	} else {
		mustErrIs(t, err, ErrPartitionExists)
	}
	b, _ := p.TryRequestBuffer()
	if err := p.Emit(2, b); err == nil {
		t.Fatal("emit on subpartition 2 of 2 accepted")
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	mustErrIs(t, p.Emit(0, b), ErrPartitionFinished)
	mustErrIs(t, p.Finish(), ErrPartitionFinished)

	// Two consumers of one subpartition: the second fails.
	spec := []ChannelSpec{{Partition: pid("e", 0), Subpartition: 1}}
	g1, err := m.OpenInputGate(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer g1.Close()
	g2, err := m.OpenInputGate(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	mustErrIs(t, waitErr(t, g2, time.Second), ErrAlreadyConsumed)

	// Out-of-range subpartition on a local channel.
	g3, err := m.OpenInputGate(context.Background(), []ChannelSpec{{Partition: pid("e", 0), Subpartition: 5}})
	if err != nil {
		t.Fatal(err)
	}
	defer g3.Close()
	if err := waitErr(t, g3, time.Second); !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("error %v does not explain the bad subpartition", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	mustErrIs(t, func() error { _, err := m.CreatePartition(pid("x", 0), 1); return err }(), ErrClosed)
	mustErrIs(t, func() error { _, err := m.OpenInputGate(context.Background(), spec); return err }(), ErrClosed)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	prod := newManager(t, Options{BufferSize: 16, BuffersPerChannel: 1, FloatingBuffers: 1, Metrics: reg})
	serve(t, prod)
	if _, err := NewManager(Options{Metrics: reg}); err == nil {
		t.Fatal("second Manager on the same registry accepted")
	}
	creg := prometheus.NewRegistry()
	cons := newManager(t, Options{BuffersPerChannel: 4, Metrics: creg}) // window < frames produced: the producer must block
	serve(t, cons)
	p, err := prod.CreatePartition(pid("m", 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: addr(prod), Partition: pid("m", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	eventually(t, 5*time.Second, "remote channel gauge", func() bool {
		return metric(t, creg, "flow_exchange_remote_channels") == 1
	})
	// Produce with a slow consumer so the producer blocks for a while.
	errc := make(chan error, 1)
	go func() { errc <- produce(context.Background(), p, 0, 10, 20) }()
	time.Sleep(100 * time.Millisecond) // the slow consumer: it reads nothing for 100ms
	if err := drain(g, 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := metric(t, reg, "flow_exchange_frames_sent_total"); got != 10 {
		t.Fatalf("frames sent %v, want 10", got)
	}
	if got := metric(t, reg, "flow_exchange_bytes_sent_total"); got != 200 {
		t.Fatalf("bytes sent %v, want 200", got)
	}
	if got := metric(t, reg, "flow_exchange_backpressured_seconds_total"); got < 0.05 {
		t.Fatalf("backpressured seconds %v, want >= 0.05", got)
	}
	g.Close()
	eventually(t, 5*time.Second, "remote channel gauge to drop", func() bool {
		return metric(t, creg, "flow_exchange_remote_channels") == 0
	})
}

// metric returns the value of a registered counter or gauge, checking it
// has help text.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		if mf.GetHelp() == "" {
			t.Fatalf("%s has no help text", name)
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// greedyServer ignores credit and sends more frames than the consumer allowed.
type greedyServer struct {
	exchangev1.UnimplementedExchangeServiceServer
}

func (greedyServer) Subscribe(st grpc.BidiStreamingServer[exchangev1.ConsumerMessage, exchangev1.ProducerMessage]) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	n := first.GetOpen().GetInitialCredit() + 1
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = []byte{byte(i)}
	}
	if err := st.Send(&exchangev1.ProducerMessage{Frames: frames}); err != nil {
		return err
	}
	<-st.Context().Done()
	return nil
}

func TestCreditViolationIsProtocolError(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	exchangev1.RegisterExchangeServiceServer(s, greedyServer{})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	defer func() { s.Stop(); <-done }()

	cons := newManager(t, Options{SelfAddress: "self", BuffersPerChannel: 2})
	g, err := cons.OpenInputGate(context.Background(), []ChannelSpec{{Address: lis.Addr().String(), Partition: pid("greedy", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	mustErrIs(t, waitErr(t, g, 5*time.Second), ErrProtocol)
}

// TestReleaseAfterFinish: releasing a finished partition whose frames were
// all delivered still gives End; releasing one with undelivered frames is an
// error for its consumer, never a silent loss.
func TestReleaseAfterFinish(t *testing.T) {
	m := newManager(t, Options{BufferSize: 8})
	p, err := m.CreatePartition(pid("rf", 0), 2)
	if err != nil {
		t.Fatal(err)
	}
	g0, err := m.OpenInputGate(context.Background(), []ChannelSpec{{Partition: pid("rf", 0), Subpartition: 0}})
	if err != nil {
		t.Fatal(err)
	}
	defer g0.Close()
	g1, err := m.OpenInputGate(context.Background(), []ChannelSpec{{Partition: pid("rf", 0), Subpartition: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer g1.Close()
	b, _ := p.TryRequestBuffer()
	if err := p.Emit(1, append(b, 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Consumed():
		t.Fatal("Consumed before any end was delivered")
	default:
	}
	p.Release()
	// Subpartition 0 had nothing queued: its End survives the release.
	ev, err := pollOne(t, g0, time.Second)
	if err != nil || !ev.End {
		t.Fatalf("want End on subpartition 0, got %+v, %v", ev, err)
	}
	// Subpartition 1's frame was dropped: an error, not an End.
	mustErrIs(t, waitErr(t, g1, time.Second), ErrPartitionReleased)
}
