package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name of the source and of the sink.
const Name = "kafka"

// maxBatch bounds the records a Next call emits.
const maxBatch = 1024

// pollInterval is how long the source waits before polling again when no
// record was buffered.
const pollInterval = 5 * time.Millisecond

// knownState is the source's union list operator state: each subtask's
// element lists the partition count of every topic it knew at the
// checkpoint, so that a restored job tells partitions created since (read
// from the earliest offset by their owner) from partitions another subtask
// reads.
const knownState = "kafka-source-partitions-v1"

const splitVersion = 1

func init() {
	api.Default.MustRegister(SourceType())
	api.Default.MustRegister(SinkType())
}

// SourceType returns the Kafka source type (registered in api.Default).
func SourceType() api.OperatorType {
	fields := append(commonFields(),
		api.Field{Name: "topics", Type: api.TypeStringList, Doc: "Topics to read (or topicPattern)."},
		api.Field{Name: "topicPattern", Type: api.TypeString, Validate: func(v any) error { _, err := regexp.Compile(v.(string)); return err },
			Doc: "Regular expression (Go RE2, anchored) of the topics to read, instead of topics; new matching topics are read from their earliest offset."},
		api.Field{Name: "discoveryInterval", Type: api.TypeDuration, Default: 10 * time.Second, Validate: nonNegativeDuration,
			Doc: "How often to look for new partitions and new topics matching topicPattern; 0 never looks (unbounded jobs only)."},
		api.Field{Name: "startingOffsets", Type: api.TypeString, Default: "earliest", Validate: func(v any) error { _, err := parseStart(v.(string)); return err },
			Doc: "Where a partition read for the first time starts: earliest, latest, committed (the group's committed offset, else earliest) or a Unix timestamp in milliseconds (the first record at or after it)."},
		api.Field{Name: "stoppingOffsets", Type: api.TypeString, Enum: []string{"none", "latest"}, Default: "none",
			Doc: "latest makes the source bounded: it ends at the offsets that were the latest when the job first started. none reads forever."},
		api.Field{Name: "group", Type: api.TypeString,
			Doc: "Consumer group to commit the checkpointed offsets to when a checkpoint completes (for lag tools and startingOffsets: committed); Flow assigns partitions itself and never joins the group."},
		api.Field{Name: "format", Type: api.TypeString, Enum: []string{"json", "raw"}, Default: "json",
			Doc: "json: each record value is a JSON document (a value that is not is a record error, see onError). raw: the bytes become the string field \"value\" of {\"value\": ...}."},
		api.Field{Name: "isolation", Type: api.TypeString, Enum: []string{"read_committed", "read_uncommitted"}, Default: "read_committed",
			Doc: "read_committed skips records of aborted and open transactions; read_uncommitted reads everything."},
		api.Field{Name: "metadata", Type: api.TypeBool, Default: false,
			Doc: "Add the fields _topic, _partition and _offset to every JSON object value. The Kafka key is always the record's key (_key in expressions) and the Kafka timestamp its event time (_ts)."},
		api.Field{Name: "watermarks", Type: api.TypeBool, Default: false,
			Doc: "Emit watermarks per partition (the largest timestamp read minus outOfOrderness), combined by minimum; use instead of the operator's watermarks section."},
		api.Field{Name: "outOfOrderness", Type: api.TypeDuration, Default: time.Duration(0), Validate: nonNegativeDuration,
			Doc: "How far behind the largest timestamp read in a partition its watermark stays."},
		api.Field{Name: "brokerTimeout", Type: api.TypeDuration, Default: 30 * time.Second, Validate: func(v any) error {
			if v.(time.Duration) < time.Second {
				return errors.New("must be at least 1s")
			}
			return nil
		}, Doc: "The source fails (and the job restarts per its strategy) when no broker answered for this long; the client retries meanwhile."},
		api.Field{Name: "idleTimeout", Type: api.TypeDuration, Default: time.Duration(0), Validate: nonNegativeDuration,
			Doc: "A partition that delivers no record for this long is left out of the watermark until it delivers again (0: never), so an empty partition does not hold event time back."},
	)
	return api.OperatorType{
		Name: Name, Kind: api.KindSource,
		Doc:          "Reads records from Kafka topics; partitions are splits, offsets are checkpointed, exactly once with checkpoints.",
		Fields:       fields,
		Example:      "- id: events\n  type: kafka\n  config:\n    brokers: [\"localhost:9092\"]\n    topics: [events]\n    startingOffsets: earliest\n    group: flow-events\n",
		CheckRestore: checkRestore,
		NewSource: func(cfg api.Config) (api.Source, error) {
			s, err := newSource(cfg)
			if err != nil {
				return nil, err
			}
			var topics []string
			if s.pattern == nil {
				topics = s.topics
			}
			if err := s.conn.check("kafka source", topics); err != nil {
				return nil, err
			}
			return s, nil
		},
	}
}

func nonNegativeDuration(v any) error {
	if v.(time.Duration) < 0 {
		return errors.New("must not be negative")
	}
	return nil
}

// Special start offsets (a non-negative value is a timestamp).
const (
	startEarliest  int64 = -2
	startLatest    int64 = -1
	startCommitted int64 = -3
)

func parseStart(s string) (int64, error) {
	switch s {
	case "earliest":
		return startEarliest, nil
	case "latest":
		return startLatest, nil
	case "committed":
		return startCommitted, nil
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms < 0 {
		return 0, fmt.Errorf("%q: use earliest, latest, committed or a Unix timestamp in milliseconds such as 1767225600000", s)
	}
	return ms, nil
}

func newSource(cfg api.Config) (*Source, error) {
	c, err := connOf(cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	s := &Source{conn: c, topics: cfg.StringList("topics"), discovery: cfg.Duration("discoveryInterval"),
		bounded: cfg.String("stoppingOffsets") == "latest", group: cfg.String("group"), raw: cfg.String("format") == "raw",
		committed: cfg.String("isolation") != "read_uncommitted", metadata: cfg.Bool("metadata"),
		watermarks: cfg.Bool("watermarks"), ooo: cfg.Duration("outOfOrderness").Milliseconds(), idle: cfg.Duration("idleTimeout"),
		brokerTimeout: cfg.Duration("brokerTimeout")}
	if s.brokerTimeout <= 0 {
		s.brokerTimeout = 30 * time.Second
	}
	if p := cfg.String("topicPattern"); p != "" {
		if len(s.topics) > 0 {
			return nil, errors.New("kafka source: give topics or topicPattern, not both")
		}
		if s.pattern, err = regexp.Compile("^(?:" + p + ")$"); err != nil {
			return nil, fmt.Errorf("kafka source: topicPattern: %w", err)
		}
	} else if len(s.topics) == 0 {
		return nil, errors.New("kafka source: topics is empty: list the topics to read, or give topicPattern")
	}
	start := cfg.String("startingOffsets")
	if start == "" {
		start = "earliest"
	}
	if s.start, err = parseStart(start); err != nil {
		return nil, fmt.Errorf("kafka source: startingOffsets: %w", err)
	}
	if s.start == startCommitted && s.group == "" {
		return nil, errors.New("kafka source: startingOffsets committed needs a group")
	}
	return s, nil
}

// RecordError is a Kafka record the source cannot turn into a Flow record
// (a value that is not JSON under format json). It is a record error:
// onError skip drops it and counts it.
type RecordError struct {
	Topic     string
	Partition int32
	Offset    int64
	Err       error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("kafka source: topic %s partition %d offset %d: %v", e.Topic, e.Partition, e.Offset, e.Err)
}
func (e *RecordError) Unwrap() error     { return e.Err }
func (e *RecordError) RecordError() bool { return true }

// split is one partition and the offset of its next record; Stop (-1:
// none) is where a bounded source stops reading it.
type split struct {
	V         int    `json:"v"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Stop      int64  `json:"stop"`
}

type tp struct {
	topic     string
	partition int32
}

// partState is an assigned partition.
type partState struct {
	split
	done       bool
	maxTs      int64
	lastActive time.Time
	lag        prometheus.Gauge
}

// knownElem is one element of the knownState union list.
type knownElem struct {
	V      int              `json:"v"`
	Topics map[string]int32 `json:"topics"`
}

// Source is one Kafka source subtask. It implements api.SplitSource (one
// split per partition), api.CheckpointedFunction (the partitions known at
// the checkpoint) and api.CheckpointListener (group offset commits).
type Source struct {
	conn                 conn
	topics               []string
	pattern              *regexp.Regexp
	discovery            time.Duration
	start                int64
	bounded              bool
	group                string
	raw, committed       bool
	metadata, watermarks bool
	ooo                  int64
	idle                 time.Duration
	brokerTimeout        time.Duration
	// lastRead is when a broker last answered (Unix ns), set by the
	// client's read hook on its goroutines: once per response.
	lastRead atomic.Int64

	log          *slog.Logger
	clock        api.Clock
	subtask, par int
	cl           *kgo.Client
	adm          *kadm.Client
	state        *api.OperatorListState[[]byte]

	initialized bool
	restored    []split // from RestoreSplits, before InitializeState
	hasRestored bool
	// listedAnew are the topics of the topics list that a restored
	// snapshot knew nothing of: the first discovery after the restore
	// starts them at startingOffsets (then it is nil).
	listedAnew map[string]bool
	parts      map[tp]*partState
	order      []*partState // sorted by topic, partition
	known      map[string]int32
	firstDone  bool // the first assignment happened (later partitions start at earliest)
	nextDiscov time.Time

	pending []*kgo.Record // polled; pending[next:] not yet emitted
	next    int
	buf     []byte

	// Watermarks.
	wm     int64
	isIdle bool

	// Group commits: offsets of snapshots not yet known complete.
	commits []commitAt

	metrics sourceMetrics
	nRecs   int64
	nBytes  int64
}

type commitAt struct {
	id      int64
	offsets kadm.Offsets
}

type sourceMetrics struct {
	records, bytes, fetchErrors prometheus.Counter
	lag                         *prometheus.GaugeVec
}

// Open implements api.Source.
func (s *Source) Open(ctx api.Context) error {
	info := ctx.Info()
	s.subtask, s.par = info.SubtaskIndex, max(info.Parallelism, 1)
	s.log, s.clock = ctx.Logger(), ctx.Clock()
	s.parts, s.known, s.wm = map[tp]*partState{}, map[string]int32{}, api.NoTimestamp
	iso := kgo.ReadUncommitted()
	if s.committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(s.conn.opts(kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords(), kgo.FetchMaxWait(250*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.WithHooks(readHook{&s.lastRead}))...)
	if err != nil {
		return fmt.Errorf("kafka source: %w", err)
	}
	s.cl, s.adm = cl, kadm.NewClient(cl)
	s.lastRead.Store(time.Now().UnixNano())
	if store, err := api.OperatorStateStoreOf(ctx); err == nil {
		if s.state, err = api.GetOperatorListState(store, api.OperatorListStateDescriptor[[]byte]{Name: knownState, Codec: api.BytesCodec(), Union: true}); err != nil {
			return fmt.Errorf("kafka source: %w", err)
		}
	}
	s.metrics = sourceMetrics{
		records:     prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_kafka_source_records_total", Help: "Records read from Kafka."}),
		bytes:       prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_kafka_source_bytes_total", Help: "Bytes of record keys and values read from Kafka."}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "flow_kafka_source_fetch_errors_total", Help: "Fetch errors reported by the Kafka client."}),
		lag:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flow_kafka_source_lag_records", Help: "Records between the source's position and the partition's high watermark."}, []string{"topic", "partition"}),
	}
	for _, c := range []prometheus.Collector{s.metrics.records, s.metrics.bytes, s.metrics.fetchErrors, s.metrics.lag} {
		_ = ctx.Metrics().Register(c) // best effort: a duplicate registration must not fail the job
	}
	return nil
}

// readHook records when a broker last answered.
type readHook struct{ last *atomic.Int64 }

func (h readHook) OnBrokerRead(_ kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	if err == nil {
		h.last.Store(time.Now().UnixNano())
	}
}

// owner is the subtask that reads a partition no checkpoint assigned.
func owner(t string, p int32, par int) int {
	h := fnv.New32a()
	h.Write([]byte(t))
	return int((uint64(h.Sum32()) + uint64(p)) % uint64(par))
}

// InitializeState implements api.CheckpointedFunction: it assigns the
// subtask's partitions (restored: its splits plus the partitions created
// since the checkpoint that it owns).
func (s *Source) InitializeState(restored bool) error {
	if restored && s.state != nil {
		elems, err := s.state.Get()
		if err != nil {
			return fmt.Errorf("kafka source: %w", err)
		}
		for i, b := range elems {
			var e knownElem
			if err := json.Unmarshal(b, &e); err != nil || e.V != 1 {
				return fmt.Errorf("kafka source: restored partition list element %d %q: want format 1 (restore with a newer Flow?)", i, b)
			}
			for t, n := range e.Topics {
				s.known[t] = max(s.known[t], n)
			}
		}
		s.firstDone = true
	}
	if restored {
		s.forgetUnread()
	}
	return s.initialize()
}

// Next implements api.Source.
func (s *Source) Next(out api.SourceOutput) (api.SourceStatus, error) {
	if !s.initialized {
		if err := s.initialize(); err != nil {
			return api.SourceStatus{}, err
		}
	}
	now := s.clock.Now()
	if !s.bounded && s.discovery > 0 {
		if s.nextDiscov.IsZero() {
			s.nextDiscov = now.Add(s.discovery)
		} else if !now.Before(s.nextDiscov) {
			s.nextDiscov = now.Add(s.discovery)
			if err := s.discover(); err != nil {
				s.log.Warn("kafka source: partition discovery failed; retrying at the next interval", "err", err)
			}
		}
	}
	if s.next == len(s.pending) {
		clear(s.pending)
		s.pending, s.next = s.pending[:0], 0
		if s.bounded && s.allDone() {
			s.publish()
			return api.SourceStatus{End: true}, nil
		}
		//nolint:staticcheck // a nil context polls only what is buffered, without blocking the mailbox
		fetches := s.cl.PollRecords(nil, maxBatch)
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			s.metrics.fetchErrors.Inc()
			if ferr == nil {
				ferr = fmt.Errorf("kafka source: fetch topic %s partition %d from brokers %v: %w", t, p, s.conn.brokers, err)
			}
		})
		if ferr != nil {
			return api.SourceStatus{}, ferr
		}
		if quiet := time.Since(time.Unix(0, s.lastRead.Load())); quiet > s.brokerTimeout {
			s.metrics.fetchErrors.Inc()
			return api.SourceStatus{}, fmt.Errorf("kafka source: no broker of %v answered for %s (brokerTimeout %s): is the cluster down?", s.conn.brokers, quiet.Round(time.Second), s.brokerTimeout)
		}
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if p := s.parts[tp{fp.Topic, fp.Partition}]; p != nil && len(fp.Records) > 0 {
				hw := fp.HighWatermark
				if s.committed && fp.LastStableOffset >= 0 {
					hw = fp.LastStableOffset
				}
				p.lag.Set(float64(max(hw-(fp.Records[len(fp.Records)-1].Offset+1), 0)))
			}
			s.pending = append(s.pending, fp.Records...)
		})
	}
	emitted, err := s.emit(out, now)
	s.watermark(out, now)
	s.publish()
	if err != nil {
		return api.SourceStatus{}, err
	}
	if emitted == 0 && s.next == len(s.pending) {
		if s.bounded && s.allDone() {
			return api.SourceStatus{End: true}, nil
		}
		return api.SourceStatus{WaitUntil: now.Add(pollInterval)}, nil
	}
	return api.SourceStatus{}, nil
}

func (s *Source) allDone() bool {
	for _, p := range s.order {
		if !p.done {
			return false
		}
	}
	return true
}

// emit turns the pending Kafka records into Flow records. A record error
// leaves the position after the bad record and the rest pending.
func (s *Source) emit(out api.SourceOutput, now time.Time) (int, error) {
	n := 0
	for s.next < len(s.pending) {
		r := s.pending[s.next]
		s.next++
		p := s.parts[tp{r.Topic, r.Partition}]
		if p == nil || p.done || r.Offset < p.Offset {
			continue // unassigned, finished, or before the position
		}
		if p.Stop >= 0 && r.Offset >= p.Stop {
			s.finish(p)
			continue
		}
		p.Offset = r.Offset + 1
		if r.Attrs.IsControl() {
			s.finishIfStopped(p)
			continue // a transaction marker: it only moves the position
		}
		value, err := s.value(r)
		if err != nil {
			s.finishIfStopped(p)
			return n, &RecordError{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Err: err}
		}
		ts := r.Timestamp.UnixMilli()
		out.Collect(api.Record{Key: r.Key, Value: value, Timestamp: ts})
		n++
		s.nRecs++
		s.nBytes += int64(len(r.Key) + len(r.Value))
		if ts > p.maxTs {
			p.maxTs = ts
		}
		p.lastActive = now
		s.finishIfStopped(p)
	}
	return n, nil
}

func (s *Source) finishIfStopped(p *partState) {
	if p.Stop >= 0 && p.Offset >= p.Stop {
		s.finish(p)
	}
}

func (s *Source) finish(p *partState) {
	if p.done {
		return
	}
	p.done = true
	s.cl.RemoveConsumePartitions(map[string][]int32{p.Topic: {p.Partition}})
}

// watermark emits the minimum of the per-partition watermarks over the
// partitions that are not idle, or marks the subtask idle when all are.
func (s *Source) watermark(out api.SourceOutput, now time.Time) {
	if !s.watermarks {
		return
	}
	wm, active := int64(0), 0
	for _, p := range s.order {
		if p.done || (s.idle > 0 && now.Sub(p.lastActive) >= s.idle) {
			continue
		}
		if p.maxTs == api.NoTimestamp {
			return // an active partition without a record yet holds event time back
		}
		w := p.maxTs - s.ooo
		if active == 0 || w < wm {
			wm = w
		}
		active++
	}
	if active == 0 {
		if !s.isIdle && len(s.order) > 0 {
			out.MarkIdle()
			s.isIdle = true
		}
		return
	}
	if s.isIdle || wm > s.wm {
		s.isIdle = false
		if wm > s.wm {
			s.wm = wm
		}
		out.EmitWatermark(s.wm)
	}
}

func (s *Source) publish() {
	if s.nRecs > 0 {
		s.metrics.records.Add(float64(s.nRecs))
		s.metrics.bytes.Add(float64(s.nBytes))
		s.nRecs, s.nBytes = 0, 0
	}
}

// Close implements api.Source.
func (s *Source) Close() error {
	if s.cl != nil {
		s.cl.Close()
		s.cl = nil
	}
	return nil
}
