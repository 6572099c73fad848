package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
)

// Delivery guarantees of the sink.
const (
	GuaranteeNone        = "none"
	GuaranteeAtLeastOnce = "at_least_once"
	GuaranteeExactlyOnce = "exactly_once"
)

// DefaultTransactionTimeout is the default transactionTimeout: Kafka's
// default transaction.max.timeout.ms.
const DefaultTransactionTimeout = 15 * time.Minute

// sinkState is the sink's union list operator state (exactly_once): one
// element per subtask, the transactions it pre-committed and that a
// restore must commit.
const sinkState = "kafka-sink-transactions-v1"

// opTimeout bounds a flush, a commit or an abort.
const opTimeout = time.Minute

// ErrTransactionTimeout is wrapped by the error of a transactionTimeout
// that the broker's transaction.max.timeout.ms refuses.
var ErrTransactionTimeout = errors.New("transactionTimeout is above the broker's transaction.max.timeout.ms")

// SinkType returns the Kafka sink type (registered in api.Default).
func SinkType() api.OperatorType {
	fields := append(commonFields(),
		api.Field{Name: "topic", Type: api.TypeString, Required: true, Doc: "Topic to write to (it must exist)."},
		api.Field{Name: "key", Type: api.TypeExpression, Doc: "Expression of the Kafka record key, such as `key` or `_key` (the record's key); absent: records have no key."},
		api.Field{Name: "format", Type: api.TypeString, Enum: []string{"json", "raw"}, Default: "json",
			Doc: "json: the record value (a JSON document) is the Kafka value. raw: a value that is a JSON string is written as the string's bytes, anything else as JSON."},
		api.Field{Name: "deliveryGuarantee", Type: api.TypeString, Enum: []string{GuaranteeNone, GuaranteeAtLeastOnce, GuaranteeExactlyOnce}, Default: GuaranteeAtLeastOnce,
			Doc: "none: fire and forget. at_least_once: every checkpoint waits until the broker acknowledged all records before it. exactly_once: one Kafka transaction per checkpoint and subtask, committed when the checkpoint completes (read it with isolation.level=read_committed)."},
		api.Field{Name: "transactionalIdPrefix", Type: api.TypeString, Validate: func(v any) error {
			if !txnPrefixRE.MatchString(v.(string)) {
				return errors.New("use letters, digits, '.', '_' and '-' only")
			}
			return nil
		}, Doc: "Prefix of the sink's transactional ids (<prefix>-<subtask>-<n>); default flow-<job name>-<operator uid>. Two jobs running at once must not share it."},
		api.Field{Name: "transactionTimeout", Type: api.TypeDuration, Default: DefaultTransactionTimeout, Validate: func(v any) error {
			if v.(time.Duration) < time.Second {
				return errors.New("must be at least 1s")
			}
			return nil
		}, Doc: "Kafka aborts a transaction left open this long: it must exceed the checkpoint interval plus the checkpoint timeout plus the longest outage to survive; at most the broker's transaction.max.timeout.ms (15m by default)."},
	)
	return api.OperatorType{
		Name: Name, Kind: api.KindSink,
		Doc:     "Writes records to a Kafka topic; at least once by default, exactly once with Kafka transactions.",
		Fields:  fields,
		Example: "- id: out\n  type: kafka\n  inputs: [count]\n  config:\n    brokers: [\"localhost:9092\"]\n    topic: counts\n    key: key\n    deliveryGuarantee: exactly_once\n",
		NewSink: func(cfg api.Config) (api.Sink, error) {
			s, err := newSink(cfg)
			if err != nil {
				return nil, err
			}
			if err := s.conn.check("kafka sink", []string{s.topic}); err != nil {
				return nil, err
			}
			if s.guarantee == GuaranteeExactlyOnce {
				if err := s.checkTimeout(); err != nil {
					return nil, err
				}
			}
			return s, nil
		},
	}
}

var txnPrefixRE = regexp.MustCompile(`^[A-Za-z0-9._-]*$`)

func newSink(cfg api.Config) (*Sink, error) {
	c, err := connOf(cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	s := &Sink{conn: c, topic: cfg.String("topic"), raw: cfg.String("format") == "raw",
		guarantee: cfg.String("deliveryGuarantee"), prefix: cfg.String("transactionalIdPrefix"),
		txnTimeout: cfg.Duration("transactionTimeout")}
	if s.guarantee == "" {
		s.guarantee = GuaranteeAtLeastOnce
	}
	if s.txnTimeout == 0 {
		s.txnTimeout = DefaultTransactionTimeout
	}
	if s.topic == "" {
		return nil, errors.New("kafka sink: topic is empty: name the topic to write to")
	}
	if k := cfg.String("key"); k != "" {
		if s.key, err = expression.Compile(k); err != nil {
			return nil, fmt.Errorf("kafka sink: key: %w", err)
		}
		s.keyField, s.keyFast = s.key.Field()
		s.env = expression.NewEnv()
	}
	return s, nil
}

// checkTimeout refuses a transactionTimeout above the broker's
// transaction.max.timeout.ms (when the broker tells it).
func (s *Sink) checkTimeout() error {
	cl, adm, err := s.conn.admin(kgo.RequestRetries(1))
	if err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	rcs, err := adm.DescribeBrokerConfigs(ctx)
	if err != nil {
		return nil // the broker does not tell: InitProducerID will
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key != "transaction.max.timeout.ms" || c.Value == nil {
				continue
			}
			ms, err := strconv.ParseInt(*c.Value, 10, 64)
			if err == nil && s.txnTimeout.Milliseconds() > ms {
				return fmt.Errorf("kafka sink: %w: %s > %s: lower transactionTimeout or raise the broker setting", ErrTransactionTimeout, s.txnTimeout, time.Duration(ms)*time.Millisecond)
			}
		}
	}
	return nil
}

// Sink is one Kafka sink subtask. With exactly_once it is a two-phase-
// commit sink (api.CheckpointedFunction, api.CheckpointListener): every
// transaction has a transactional id of its own, <prefix>-<subtask>-<n>,
// and a client of its own; SnapshotState flushes the open transaction and
// records its id, producer id and epoch as pending for the checkpoint;
// NotifyCheckpointComplete commits the pending transactions up to the
// checkpoint. A restore commits the restored pending transactions with an
// EndTxn request carrying their recorded producer id and epoch, then
// aborts every other open transaction of the prefix that the subtask
// takes over.
type Sink struct {
	conn       conn
	topic      string
	raw        bool
	guarantee  string
	prefix     string
	txnTimeout time.Duration

	key      *expression.Program
	keyField string
	keyFast  bool
	env      *expression.Env
	keyBuf   []byte

	log          *slog.Logger
	subtask, par int
	state        *api.OperatorListState[[]byte]

	cl  *kgo.Client // at_least_once/none producer; exactly_once: the admin client
	adm *kadm.Client

	// exactly_once
	next    int64 // n of the next transactional id
	cur     *txn  // the open transaction (nil: none)
	pending []*txn

	pool    sync.Pool // *kgo.Record
	promise func(*kgo.Record, error)
	mu      sync.Mutex
	err     error // first produce error since the last check

	metrics sinkMetrics
	nRecs   int64

	// Records are produced under pctx, which ends between opTimeout and
	// 2*opTimeout after they were handed over: a record the brokers do not
	// take by then fails (and the task with it) instead of being retried
	// forever against a cluster that went away, and a full buffer does not
	// block Write forever. pctx is renewed every opTimeout; the one before
	// has then at most opTimeout left, the one before that has ended.
	pctx                context.Context
	pctxBorn            time.Time
	pcancel, prevCancel context.CancelFunc
}

type sinkMetrics struct {
	records, committed, lost prometheus.Counter
}

// txn is one transaction: open (cl set, not flushed), pre-committed
// (Checkpoint > 0) or restored (cl nil).
type txn struct {
	ID         string `json:"id"`
	PID        int64  `json:"pid"`
	Epoch      int16  `json:"epoch"`
	Checkpoint int64  `json:"checkpoint"`
	cl         *kgo.Client
	warmed     chan struct{} // closed when the warm-up ended (nil: none)
}

// warm initialises the transaction's producer id in a goroutine that ends
// when the broker answered, the timeout passed or the client closed.
func (t *txn) warm(timeout time.Duration) {
	t.warmed = make(chan struct{})
	go func(cl *kgo.Client, done chan struct{}) {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, _, _ = cl.ProducerID(ctx) // errors surface on the first produce
	}(t.cl, t.warmed)
}

// close closes the transaction's client (its transaction, if any, is left
// to the broker or to a restore) and waits for the warm-up.
func (t *txn) close() {
	if t.cl != nil {
		t.cl.Close()
		t.cl = nil
	}
	if t.warmed != nil {
		<-t.warmed
	}
}

// sinkElem is one element of the sink's union list state.
type sinkElem struct {
	V       int    `json:"v"`
	Subtask int    `json:"subtask"`
	Next    int64  `json:"next"`
	Pending []*txn `json:"pending"`
}

// Open implements api.Sink.
func (s *Sink) Open(ctx api.Context) error {
	info := ctx.Info()
	s.subtask, s.par, s.log = info.SubtaskIndex, max(info.Parallelism, 1), ctx.Logger()
	if s.prefix == "" {
		s.prefix = DefaultTransactionalIDPrefix(info.JobName, info.OperatorUID, info.OperatorID)
	}
	s.pool.New = func() any { return new(kgo.Record) }
	s.promise = func(r *kgo.Record, err error) {
		if err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = err
			}
			s.mu.Unlock()
		}
		r.Value, r.Key = r.Value[:0], r.Key[:0]
		s.pool.Put(r)
	}
	s.metrics = sinkMetrics{
		records:   prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_kafka_sink_records_total", Help: "Records handed to the Kafka producer."}),
		committed: prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_kafka_sink_transactions_committed_total", Help: "Kafka transactions committed (exactly_once)."}),
		lost:      prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_kafka_sink_transactions_lost_total", Help: "Pre-committed Kafka transactions a restore could not commit (aborted by the broker, usually after transactionTimeout)."}),
	}
	for _, c := range []prometheus.Collector{s.metrics.records, s.metrics.committed, s.metrics.lost} {
		_ = ctx.Metrics().Register(c)
	}
	var err error
	switch s.guarantee {
	case GuaranteeExactlyOnce:
		s.cl, s.adm, err = s.conn.admin()
		if store, serr := api.OperatorStateStoreOf(ctx); serr == nil {
			if s.state, serr = api.GetOperatorListState(store, api.OperatorListStateDescriptor[[]byte]{Name: sinkState, Codec: api.BytesCodec(), Union: true}); serr != nil {
				return fmt.Errorf("kafka sink: %w", serr)
			}
		}
	case GuaranteeNone:
		s.cl, err = kgo.NewClient(s.conn.opts(kgo.DefaultProduceTopic(s.topic), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())...)
	default:
		s.cl, err = kgo.NewClient(s.conn.opts(kgo.DefaultProduceTopic(s.topic))...)
	}
	if err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	return nil
}

// DefaultTransactionalIDPrefix is the transactionalIdPrefix of a sink that
// sets none: flow-<job name>-<operator uid> (the operator id without a
// uid), characters other than letters, digits, '.', '_' and '-' replaced
// by '_'. It is stable across restarts and restores of the job.
func DefaultTransactionalIDPrefix(jobName, uid, id string) string {
	if uid == "" {
		uid = id
	}
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
				return r
			}
			return '_'
		}, s)
	}
	return "flow-" + clean(jobName) + "-" + clean(uid)
}

// sinkRecordError is a record the sink cannot key.
type sinkRecordError struct{ err error }

func (e *sinkRecordError) Error() string     { return "kafka sink: " + e.err.Error() }
func (e *sinkRecordError) Unwrap() error     { return e.err }
func (e *sinkRecordError) RecordError() bool { return true }

// Write implements api.Sink.
func (s *Sink) Write(r api.Record) error {
	if err := s.takeErr(); err != nil {
		return err
	}
	kr := s.pool.Get().(*kgo.Record)
	kr.Topic = s.topic
	kr.Headers, kr.Partition = nil, 0
	kr.Timestamp = time.Time{}
	if r.Timestamp != api.NoTimestamp {
		kr.Timestamp = time.UnixMilli(r.Timestamp)
	}
	if s.key != nil {
		k, err := s.keyOf(r)
		if err != nil {
			s.pool.Put(kr)
			return &sinkRecordError{err: fmt.Errorf("key: %w", err)}
		}
		kr.Key = append(kr.Key[:0], k...)
	} else {
		kr.Key = nil
	}
	kr.Value = append(kr.Value[:0], s.valueOf(r.Value)...)
	cl := s.cl
	if s.guarantee == GuaranteeExactlyOnce {
		if s.cur == nil {
			if err := s.begin(); err != nil {
				s.pool.Put(kr)
				return err
			}
		}
		cl = s.cur.cl
	}
	cl.Produce(s.produceCtx(), kr, s.promise)
	s.nRecs++
	if s.nRecs >= 1024 {
		s.publish()
	}
	return nil
}

// produceCtx returns the context a record is produced under now.
func (s *Sink) produceCtx() context.Context {
	now := time.Now()
	if s.pctx == nil || now.Sub(s.pctxBorn) >= opTimeout {
		if s.prevCancel != nil {
			s.prevCancel() // past its deadline already
		}
		s.prevCancel = s.pcancel
		s.pctx, s.pcancel = context.WithDeadline(context.Background(), now.Add(2*opTimeout))
		s.pctxBorn = now
	}
	return s.pctx
}

func (s *Sink) keyOf(r api.Record) ([]byte, error) {
	if s.keyFast {
		if k, ok := expression.AppendFieldKey(s.keyBuf[:0], r.Value, s.keyField); ok {
			s.keyBuf = k
			return k, nil
		}
	}
	if err := s.env.Reset(r.Value, r.Timestamp, r.Key); err != nil {
		return nil, err
	}
	k, err := s.key.EvalKey(s.keyBuf[:0], s.env)
	if err != nil {
		return nil, err
	}
	s.keyBuf = k
	return k, nil
}

// valueOf renders the Kafka value of a record value.
func (s *Sink) valueOf(v []byte) []byte {
	if !s.raw || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v
	}
	inner := v[1 : len(v)-1]
	for _, c := range inner {
		if c == '\\' {
			var str string
			if json.Unmarshal(v, &str) != nil {
				return v
			}
			return []byte(str)
		}
	}
	return inner
}

func (s *Sink) publish() {
	if s.nRecs > 0 {
		s.metrics.records.Add(float64(s.nRecs))
		s.nRecs = 0
	}
}

// takeErr returns (and clears) the first produce error.
func (s *Sink) takeErr() error {
	s.mu.Lock()
	err := s.err
	s.err = nil
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("kafka sink: produce to topic %s on brokers %v: %w", s.topic, s.conn.brokers, err)
	}
	return nil
}

// Finish implements api.Sink: the end of input is committed without
// waiting for a checkpoint (exactly_once), or flushed.
func (s *Sink) Finish() error {
	s.publish()
	switch s.guarantee {
	case GuaranteeExactlyOnce:
		if err := s.preCommit(0); err != nil {
			return err
		}
		return s.commit(func(*txn) bool { return true })
	default:
		return s.flush(s.cl)
	}
}

// Close implements api.Sink. Open and pending transactions are left to
// the restore (which commits the pending ones and aborts the rest).
func (s *Sink) Close() error {
	s.publish()
	if s.cur != nil {
		s.cur.close()
	}
	for _, t := range s.pending {
		t.close()
	}
	s.cur, s.pending = nil, nil
	if s.cl != nil {
		s.cl.Close()
		s.cl = nil
	}
	for _, c := range []context.CancelFunc{s.pcancel, s.prevCancel} {
		if c != nil {
			c()
		}
	}
	s.pctx, s.pcancel, s.prevCancel = nil, nil, nil
	return nil
}
