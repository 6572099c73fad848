package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file holds the sink's exactly_once mode: a transaction per
// checkpoint, pre-committed at the snapshot, committed on completion, and
// lingering transactions of earlier runs aborted on restore.

// txnID is the transactional id n of subtask sub.
func (s *Sink) txnID(sub int, n int64) string {
	return s.prefix + "-" + strconv.Itoa(sub) + "-" + strconv.FormatInt(n, 10)
}

// parseTxnID returns the subtask of a transactional id of the prefix.
func (s *Sink) parseTxnID(id string) (sub int, ok bool) {
	rest, ok := strings.CutPrefix(id, s.prefix+"-")
	if !ok {
		return 0, false
	}
	a, b, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	sub, err1 := strconv.Atoi(a)
	_, err2 := strconv.ParseInt(b, 10, 64)
	return sub, err1 == nil && err2 == nil && sub >= 0
}

// begin opens the next transaction with a client of its own.
func (s *Sink) begin() error {
	id := s.txnID(s.subtask, s.next)
	s.next++
	cl, err := kgo.NewClient(s.conn.opts(kgo.DefaultProduceTopic(s.topic), kgo.TransactionalID(id), kgo.TransactionTimeout(s.txnTimeout))...)
	if err != nil {
		return fmt.Errorf("kafka sink: transactional client %s: %w", id, err)
	}
	if err := cl.BeginTransaction(); err != nil {
		cl.Close()
		return fmt.Errorf("kafka sink: begin transaction %s: %w", id, err)
	}
	s.cur = &txn{ID: id, cl: cl}
	return nil
}

// flush waits until the broker acknowledged every record produced with cl.
func (s *Sink) flush(cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("kafka sink: flush to topic %s: %w", s.topic, err)
	}
	return s.takeErr()
}

// preCommit flushes the open transaction and makes it pending for
// checkpoint id.
func (s *Sink) preCommit(id int64) error {
	t := s.cur
	if t == nil {
		return nil
	}
	if err := s.flush(t.cl); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	pid, epoch, err := t.cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("kafka sink: producer id of transaction %s: %w", t.ID, err)
	}
	t.PID, t.Epoch, t.Checkpoint = pid, epoch, id
	s.pending = append(s.pending, t)
	s.cur = nil
	if id > 0 {
		// Records are flowing: open the next transaction now and let its
		// client initialise its producer id in the background, so the
		// first record after the barrier does not wait for it.
		if err := s.begin(); err != nil {
			return err
		}
		s.cur.warm(s.txnTimeout)
	}
	return nil
}

// SnapshotState implements api.CheckpointedFunction.
func (s *Sink) SnapshotState(id int64) error {
	s.publish()
	switch s.guarantee {
	case GuaranteeAtLeastOnce:
		return s.flush(s.cl)
	case GuaranteeNone:
		return s.takeErr()
	}
	if err := s.preCommit(id); err != nil {
		return err
	}
	if s.state == nil {
		return nil
	}
	b, err := json.Marshal(sinkElem{V: 1, Subtask: s.subtask, Next: s.next, Pending: s.pending})
	if err != nil {
		return fmt.Errorf("kafka sink: encode state: %w", err)
	}
	return s.state.Update([][]byte{b})
}

// NotifyCheckpointComplete implements api.CheckpointListener: commit the
// transactions pending for checkpoints up to id.
func (s *Sink) NotifyCheckpointComplete(id int64) error {
	return s.commit(func(t *txn) bool { return t.Checkpoint <= id })
}

// NotifyCheckpointAborted implements api.CheckpointListener. The
// transactions of an aborted checkpoint stay pending: the next checkpoint
// records them again and its completion commits them.
func (s *Sink) NotifyCheckpointAborted(int64) error { return nil }

func (s *Sink) commit(keep func(*txn) bool) error {
	rest := s.pending[:0]
	var err error
	for _, t := range s.pending {
		if err != nil || !keep(t) {
			rest = append(rest, t)
			continue
		}
		if err = s.commitTxn(t); err != nil {
			rest = append(rest, t)
			continue
		}
		s.metrics.committed.Inc()
	}
	s.pending = rest
	return err
}

// commitTxn commits a pre-committed transaction: with its own client, or
// (restored) with an EndTxn request carrying its producer id and epoch.
func (s *Sink) commitTxn(t *txn) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if t.cl != nil {
		if err := t.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			return fmt.Errorf("kafka sink: commit transaction %s: %w", t.ID, err)
		}
		t.close()
		return nil
	}
	req := kmsg.NewPtrEndTxnRequest()
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = t.ID, t.PID, t.Epoch, true
	resp, err := req.RequestWith(ctx, s.cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	return err
}

// InitializeState implements api.CheckpointedFunction. exactly_once: after
// a restore, commit the pending transactions of the old subtasks this
// subtask takes over (old subtask j goes to j mod parallelism); then, on
// every start, abort the open transactions of the prefix that belong to
// those subtasks, so read_committed consumers are not held back by a
// transaction no one will end.
func (s *Sink) InitializeState(restored bool) error {
	if s.guarantee != GuaranteeExactlyOnce {
		return nil
	}
	if restored && s.state != nil {
		elems, err := s.state.Get()
		if err != nil {
			return fmt.Errorf("kafka sink: %w", err)
		}
		for i, b := range elems {
			var e sinkElem
			if err := json.Unmarshal(b, &e); err != nil || e.V != 1 || e.Subtask < 0 {
				return fmt.Errorf("kafka sink: restored state element %d %q: want format 1 (restore with a newer Flow?)", i, b)
			}
			if e.Subtask == s.subtask {
				s.next = e.Next
			}
			if e.Subtask%s.par != s.subtask {
				continue
			}
			for _, t := range e.Pending {
				if err := s.commitTxn(t); err != nil {
					if isLost(err) {
						s.metrics.lost.Inc()
						s.log.Error("kafka sink: a transaction of the restored checkpoint cannot be committed: the broker aborted it (was the job down longer than transactionTimeout?); its records are lost",
							"transactional_id", t.ID, "checkpoint", t.Checkpoint, "err", err)
						continue
					}
					return fmt.Errorf("kafka sink: restore: commit transaction %s of checkpoint %d: %w", t.ID, t.Checkpoint, err)
				}
				s.metrics.committed.Inc()
			}
		}
	}
	return s.abortLingering()
}

func isLost(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.InvalidProducerIDMapping) || errors.Is(err, kerr.InvalidTxnState) || errors.Is(err, kerr.TransactionalIDNotFound)
}

// abortLingering aborts every open transaction of the prefix whose
// subtask maps to this one, by initialising its transactional id again
// (the broker aborts the open transaction and fences its producer).
func (s *Sink) abortLingering() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	txns, err := s.adm.ListTransactions(ctx, nil, []string{"Ongoing"})
	if err != nil {
		return fmt.Errorf("kafka sink: list open transactions on brokers %v (exactly_once needs Kafka 3.0 or newer): %w", s.conn.brokers, err)
	}
	for _, t := range txns.Sorted() {
		sub, ok := s.parseTxnID(t.TxnID)
		if !ok || sub%s.par != s.subtask {
			continue
		}
		if err := s.abortID(ctx, t.TxnID); err != nil {
			return err
		}
		s.log.Info("kafka sink: aborted a lingering transaction", "transactional_id", t.TxnID)
	}
	return nil
}

func (s *Sink) abortID(ctx context.Context, id string) error {
	for {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID = &id
		req.TransactionTimeoutMillis = int32(s.txnTimeout.Milliseconds())
		req.ProducerID, req.ProducerEpoch = -1, -1
		resp, err := req.RequestWith(ctx, s.cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if errors.Is(err, kerr.ConcurrentTransactions) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("kafka sink: abort lingering transaction %s: %w", id, ctx.Err())
			case <-time.After(50 * time.Millisecond):
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("kafka sink: abort lingering transaction %s: %w", id, err)
		}
		return nil
	}
}
