package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	exchangev1 "github.com/flowrt/flow/proto/flow/exchange/v1"
	"google.golang.org/grpc"
)

// Manager is one TaskManager's exchange: it registers the producer
// partitions of its subtasks, serves them to remote consumers over gRPC,
// and opens input gates for its consumer subtasks.
type Manager struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	done chan struct{} // closed by Close

	mu         sync.Mutex
	self       string
	closed     bool
	partitions map[PartitionID]*ResultPartition
	registered chan struct{} // closed and replaced on every registration
	pending    map[PartitionID][]*localChannel
	conns      map[string]*grpc.ClientConn
}

// NewManager validates opts, applies defaults and builds a Manager.
func NewManager(opts Options) (*Manager, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.ensureDefaults()
	met, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	return &Manager{
		opts:       opts,
		log:        opts.Logger.With("component", "exchange"),
		metrics:    met,
		done:       make(chan struct{}),
		self:       opts.SelfAddress,
		partitions: make(map[PartitionID]*ResultPartition),
		registered: make(chan struct{}),
		pending:    make(map[PartitionID][]*localChannel),
		conns:      make(map[string]*grpc.ClientConn),
	}, nil
}

// SetSelfAddress sets this TaskManager's RPC address, for when the port is
// only known after listening. Gates opened afterwards use it.
func (m *Manager) SetSelfAddress(addr string) {
	m.mu.Lock()
	m.self = addr
	m.mu.Unlock()
}

// RegisterService registers the ExchangeService server on s, serving this
// Manager's partitions to remote consumers.
func (m *Manager) RegisterService(s *grpc.Server) {
	exchangev1.RegisterExchangeServiceServer(s, &server{m: m})
}

// Close releases every partition, fails channels still waiting for a local
// partition, and closes client connections (which breaks this Manager's
// remote input channels). Gates must still be closed by their owners.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	parts := make([]*ResultPartition, 0, len(m.partitions))
	for _, p := range m.partitions {
		parts = append(parts, p)
	}
	var pend []*localChannel
	for id, cs := range m.pending {
		for _, c := range cs {
			c.timer.Stop()
		}
		pend = append(pend, cs...)
		delete(m.pending, id)
	}
	conns := m.conns
	m.conns = map[string]*grpc.ClientConn{}
	m.mu.Unlock()

	for _, p := range parts {
		p.Release()
	}
	for _, c := range pend {
		c.fail(fmt.Errorf("exchange manager closed while waiting for the partition: %w", ErrClosed))
	}
	var errs []error
	for addr, cc := range conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to %s: %w", addr, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("exchange: close manager: %w", err)
	}
	return nil
}

// CreatePartition registers a producer partition with the given number of
// subpartitions. Consumers already waiting for it are attached.
func (m *Manager) CreatePartition(id PartitionID, subpartitions int) (*ResultPartition, error) {
	if subpartitions < 0 {
		return nil, fmt.Errorf("exchange: create partition %s: negative subpartition count %d", id, subpartitions)
	}
	p := newResultPartition(m, id, subpartitions)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, fmt.Errorf("exchange: create partition %s: %w", id, ErrClosed)
	}
	if _, ok := m.partitions[id]; ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("exchange: create partition %s (release the previous attempt's partition first): %w", id, ErrPartitionExists)
	}
	m.partitions[id] = p
	close(m.registered)
	m.registered = make(chan struct{})
	waiting := m.pending[id]
	delete(m.pending, id)
	for _, c := range waiting {
		c.timer.Stop()
	}
	m.mu.Unlock()
	for _, c := range waiting {
		c.bind(p)
	}
	return p, nil
}

func (m *Manager) unregister(p *ResultPartition) {
	m.mu.Lock()
	if m.partitions[p.id] == p {
		delete(m.partitions, p.id)
	}
	m.mu.Unlock()
}

// waitPartition returns the registered partition id, waiting up to
// RegisterTimeout for it to appear.
func (m *Manager) waitPartition(ctx context.Context, id PartitionID) (*ResultPartition, error) {
	var timer *time.Timer
	for {
		m.mu.Lock()
		p, ok := m.partitions[id]
		reg, closed := m.registered, m.closed
		m.mu.Unlock()
		if ok {
			if timer != nil {
				timer.Stop()
			}
			return p, nil
		}
		if closed {
			return nil, ErrClosed
		}
		if timer == nil {
			timer = time.NewTimer(m.opts.RegisterTimeout)
			defer timer.Stop()
		}
		select {
		case <-reg:
		case <-timer.C:
			return nil, fmt.Errorf("%w within %s (is the producer task deployed? raise RegisterTimeout)", ErrPartitionNotFound, m.opts.RegisterTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.done:
			return nil, ErrClosed
		}
	}
}

// ChannelSpec names one input channel: one subpartition of one upstream
// subtask's partition, served by the TaskManager at Address.
type ChannelSpec struct {
	Address      string // RPC address of the producer's TaskManager
	Partition    PartitionID
	Subpartition int32
}

// OpenInputGate creates a gate over the channels (channel i == chans[i]).
// Channels whose Address is this Manager's self address read the local
// partition directly; others open a gRPC stream asynchronously. A producer
// partition that is not registered yet is waited for up to RegisterTimeout,
// after which Poll returns an error naming the partition and address.
// Cancelling ctx breaks the gate's remote channels; Close releases it.
func (m *Manager) OpenInputGate(ctx context.Context, chans []ChannelSpec) (*InputGate, error) {
	m.mu.Lock()
	self, closed := m.self, m.closed
	m.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("exchange: open input gate: %w", ErrClosed)
	}
	n := len(chans)
	gctx, cancel := context.WithCancel(ctx)
	g := &InputGate{
		m:       m,
		chans:   make([]inputChannel, n),
		avail:   make(chan struct{}, 1),
		ctx:     gctx,
		cancel:  cancel,
		ready:   newIndexRing(n),
		queued:  make([]bool, n),
		blocked: make([]bool, n),
		parked:  make([]bool, n),
		ended:   make([]bool, n),
	}
	var locals []*localChannel
	var remotes []*remoteChannel
	for i, spec := range chans {
		if spec.Subpartition < 0 {
			cancel()
			return nil, fmt.Errorf("exchange: open input gate: channel %d: negative subpartition %d of partition %s", i, spec.Subpartition, spec.Partition)
		}
		if spec.Address == self {
			c := &localChannel{g: g, idx: i, spec: spec}
			g.chans[i] = c
			locals = append(locals, c)
		} else {
			c := newRemoteChannel(g, i, spec)
			g.chans[i] = c
			remotes = append(remotes, c)
		}
	}
	for _, c := range locals {
		m.openLocal(c)
	}
	for _, c := range remotes {
		g.wg.Add(1)
		go c.run()
	}
	return g, nil
}

// openLocal binds c to its partition now, or parks it until the partition
// is registered or RegisterTimeout passes.
func (m *Manager) openLocal(c *localChannel) {
	id := c.spec.Partition
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.fail(fmt.Errorf("exchange manager closed: %w", ErrClosed))
		return
	}
	if p, ok := m.partitions[id]; ok {
		m.mu.Unlock()
		c.bind(p)
		return
	}
	timeout := m.opts.RegisterTimeout
	c.timer = time.AfterFunc(timeout, func() {
		if m.removePending(c) {
			c.fail(fmt.Errorf("%w within %s (is the producer task deployed? raise RegisterTimeout)", ErrPartitionNotFound, timeout))
		}
	})
	m.pending[id] = append(m.pending[id], c)
	m.mu.Unlock()
}

// removePending unparks c; false if it was not parked (already bound or failed).
func (m *Manager) removePending(c *localChannel) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := m.pending[c.spec.Partition]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i], cs[i+1:]...)
			if len(cs) == 0 {
				delete(m.pending, c.spec.Partition)
			} else {
				m.pending[c.spec.Partition] = cs
			}
			c.timer.Stop()
			return true
		}
	}
	return false
}

func (m *Manager) cancelPending(c *localChannel) { m.removePending(c) }
