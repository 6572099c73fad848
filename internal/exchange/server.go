package exchange

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	exchangev1 "github.com/flowrt/flow/proto/flow/exchange/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxBatchBytes bounds the frame bytes in one ProducerMessage (a batch always
// holds at least one frame, whatever its size).
const maxBatchBytes = 1 << 20

// server serves a Manager's partitions: one Subscribe stream per remote
// input channel.
type server struct {
	exchangev1.UnimplementedExchangeServiceServer
	m *Manager
}

// wakeup is a subpartition reader that wakes the stream's send loop.
type wakeup chan struct{}

func (w wakeup) notify() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// Subscribe implements the producer side of the protocol: wait for the
// partition, attach to the subpartition, send frames within the consumer's
// credit (returning sent buffers to the pool), heartbeats when idle, and
// end after Finish once the queue drained.
func (s *server) Subscribe(st grpc.BidiStreamingServer[exchangev1.ConsumerMessage, exchangev1.ProducerMessage]) error {
	m := s.m
	ctx := st.Context()
	first, err := st.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil || open.GetId() == nil {
		return status.Error(codes.InvalidArgument, "exchange: first message must be Open with an id")
	}
	pid := open.GetId()
	id := PartitionID{JobID: pid.GetJobId(), Attempt: pid.GetAttempt(), Task: pid.GetTask(), Subtask: pid.GetSubtask(), DownstreamTask: pid.GetDownstreamTask()}
	if open.GetInitialCredit() <= 0 {
		return status.Errorf(codes.InvalidArgument, "exchange: subscribe to %s: initial credit %d must be positive", id, open.GetInitialCredit())
	}
	p, err := m.waitPartition(ctx, id)
	if err != nil {
		switch {
		case errors.Is(err, ErrPartitionNotFound):
			return status.Errorf(codes.NotFound, "exchange: partition %s: %v", id, err)
		case errors.Is(err, ErrClosed):
			return status.Errorf(codes.Unavailable, "exchange: partition %s: TaskManager exchange closed", id)
		default:
			return status.FromContextError(err).Err()
		}
	}
	sub := int(pid.GetSubpartition())
	if sub < 0 || sub >= len(p.subs) {
		return status.Errorf(codes.InvalidArgument, "exchange: partition %s has %d subpartitions, consumer asked for %d", id, len(p.subs), sub)
	}
	sp := p.subs[sub]
	wake := make(wakeup, 1)
	if err := sp.attach(wake); err != nil {
		return status.Errorf(codes.AlreadyExists, "exchange: %v", err)
	}
	wake.notify() // whatever was queued before the attach
	sent := false
	defer func() { sp.detach(!sent) }()

	var credit atomic.Int32
	credit.Store(open.GetInitialCredit())
	recvDone := make(chan error, 1)
	// Reads credit until the stream ends; Recv fails once this handler returns.
	go func() {
		msg := new(exchangev1.ConsumerMessage)
		for {
			if err := st.RecvMsg(msg); err != nil {
				recvDone <- err
				return
			}
			if c := msg.GetCredit(); c > 0 {
				credit.Add(c)
				wake.notify()
			}
		}
	}()

	// Acknowledge the subscription so the consumer knows the partition exists.
	empty := &exchangev1.ProducerMessage{}
	if err := st.Send(empty); err != nil {
		return err
	}
	return s.send(ctx, st, sp, &credit, wake, recvDone, &sent)
}

func (s *server) send(ctx context.Context, st grpc.BidiStreamingServer[exchangev1.ConsumerMessage, exchangev1.ProducerMessage],
	sp *subpartition, credit *atomic.Int32, wake wakeup, recvDone <-chan error, sent *bool) error {
	m := s.m
	pool := sp.p.pool
	empty := &exchangev1.ProducerMessage{}
	msg := &exchangev1.ProducerMessage{}
	hb := time.NewTicker(m.opts.heartbeatInterval)
	defer hb.Stop()
	active := false
	for {
		for {
			var end bool
			var err error
			var prio int
			msg.Frames, prio, end, err = sp.popBatch(msg.Frames[:0], int(credit.Load()), maxBatchBytes)
			if err != nil {
				return status.Errorf(codes.Aborted, "exchange: partition %s subpartition %d: %v", sp.p.id, sp.index, err)
			}
			if len(msg.Frames) == 0 && !end {
				break
			}
			msg.End = end
			if err := st.Send(msg); err != nil {
				return err
			}
			*sent, active = true, true
			credit.Add(-int32(len(msg.Frames) - prio)) // priority frames need no credit
			for i, f := range msg.Frames {
				pool.put(f)
				msg.Frames[i] = nil
			}
			if end {
				return nil
			}
		}
		select {
		case <-wake:
		case <-hb.C:
			if !active {
				if err := st.Send(empty); err != nil {
					return err
				}
			}
			active = false
		case err := <-recvDone:
			return fmt.Errorf("exchange: consumer of partition %s subpartition %d went away: %w", sp.p.id, sp.index, err)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}
