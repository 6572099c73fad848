package runtime

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

// Metrics of keyed state backends.
//
// One stateCollector per registry (a TaskManager's) holds the keyed
// backends of every subtask there and reads them on scrape: the task
// goroutine publishes its backends' counts with PublishMetrics at most
// every publishInterval, and Pebble answers its own metrics on any
// goroutine. A subtask adds its backends when it opens them and removes
// them when it closes them; a new attempt whose series are those of an
// attempt still being canceled shadows it (the newest is reported).

var (
	stateLabels = []string{"flow_job", "flow_job_name", "operator", "subtask", "backend"}
	lsmLabels   = stateLabels[:4]

	descStateKeys = prometheus.NewDesc("flow_state_keys",
		"Keys with keyed state of an operator's subtask: heap: cells (a key and namespace of one state); pebble: an estimate from its SST files.", stateLabels, nil)
	descStateBytes = prometheus.NewDesc("flow_state_size_bytes",
		"Size of an operator's keyed state in its backend: heap: its slots, keys and values; pebble: live SST files plus memtables.", stateLabels, nil)
	descStateAccesses = prometheus.NewDesc("flow_state_accesses_total",
		"Keyed state reads and writes of an operator.", stateLabels, nil)
	descStateLatency = prometheus.NewDesc("flow_state_access_latency_seconds",
		"Latency of keyed state accesses, sampled: one access in 1024 is timed.", append(stateLabels[:5:5], "access"), nil)
	descTimersRegistered = prometheus.NewDesc("flow_state_timers_registered_total",
		"Timers an operator registered (event and processing time).", stateLabels, nil)
	descTimersFired = prometheus.NewDesc("flow_state_timers_fired_total",
		"Timers that fired.", stateLabels, nil)
	descTTLRemoved = prometheus.NewDesc("flow_state_ttl_removed_total",
		"Expired TTL state entries removed (values, list elements, map entries), on access or by a sweep.", stateLabels, nil)

	descMemtable = prometheus.NewDesc("flow_state_pebble_memtable_bytes",
		"Bytes allocated by the memtables of a Pebble state DB.", lsmLabels, nil)
	descDebt = prometheus.NewDesc("flow_state_pebble_compaction_debt_bytes",
		"Pebble's estimate of the bytes to compact before the state DB's LSM is stable.", lsmLabels, nil)
	descL0Files = prometheus.NewDesc("flow_state_pebble_l0_files",
		"SST files in level 0 of a Pebble state DB.", lsmLabels, nil)
	descL0Sublevels = prometheus.NewDesc("flow_state_pebble_l0_sublevels",
		"Sublevels of level 0 of a Pebble state DB (its read amplification there).", lsmLabels, nil)
	descWAL = prometheus.NewDesc("flow_state_pebble_wal_bytes",
		"Live bytes in a Pebble state DB's write-ahead log (0 with the WAL off, the default).", lsmLabels, nil)
	descDisk = prometheus.NewDesc("flow_state_pebble_disk_bytes",
		"Disk space used by every file of a Pebble state DB.", lsmLabels, nil)

	stateDescs = []*prometheus.Desc{descStateKeys, descStateBytes, descStateAccesses, descStateLatency, descTimersRegistered,
		descTimersFired, descTTLRemoved, descMemtable, descDebt, descL0Files, descL0Sublevels, descWAL, descDisk}
)

// stateCollector reports the keyed backends registered with it.
type stateCollector struct {
	mu      sync.Mutex
	entries []*stateEntry
}

// stateEntry is one operator's keyed backend in one subtask.
type stateEntry struct {
	labels []string // values of stateLabels
	be     statebackend.Backend
}

// stateCollectorOf returns reg's state collector, registering one the
// first time.
func stateCollectorOf(reg prometheus.Registerer) (*stateCollector, error) {
	c := &stateCollector{}
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if x, ok := are.ExistingCollector.(*stateCollector); ok {
			return x, nil
		}
		return nil, fmt.Errorf("a collector of another type is registered as the state backend metrics")
	}
	if err != nil {
		return nil, fmt.Errorf("register state backend metrics: %w", err)
	}
	return c, nil
}

func (c *stateCollector) add(e *stateEntry) {
	c.mu.Lock()
	c.entries = append(c.entries, e)
	c.mu.Unlock()
}

func (c *stateCollector) remove(e *stateEntry) {
	c.mu.Lock()
	for i, x := range c.entries {
		if x == e {
			c.entries = append(c.entries[:i], c.entries[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range stateDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the newest entry of each
// label set.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	entries := append([]*stateEntry(nil), c.entries...)
	c.mu.Unlock()
	seen := map[[4]string]bool{}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		id := [4]string(e.labels[:4])
		if seen[id] {
			continue
		}
		seen[id] = true
		collectState(ch, e.labels, e.be.Metrics())
	}
}

func collectState(ch chan<- prometheus.Metric, l []string, m statebackend.Metrics) {
	gauge := func(d *prometheus.Desc, v int64, l []string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), l...)
	}
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(descStateKeys, m.Keys, l)
	gauge(descStateBytes, m.Bytes, l)
	counter(descStateAccesses, m.Accesses)
	counter(descTimersRegistered, m.TimersRegistered)
	counter(descTimersFired, m.TimersFired)
	counter(descTTLRemoved, m.TTLExpired)
	for _, h := range []struct {
		access string
		h      statebackend.Histogram
	}{{"read", m.ReadLatency}, {"write", m.WriteLatency}} {
		buckets := make(map[float64]uint64, len(h.h.Buckets))
		for i, b := range statebackend.AccessLatencyBuckets {
			buckets[b] = h.h.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(descStateLatency, h.h.Count, h.h.Sum, buckets, append(l[:5:5], h.access)...)
	}
	if x := m.LSM; x != nil {
		ll := l[:4]
		gauge(descMemtable, x.MemtableBytes, ll)
		gauge(descDebt, x.CompactionDebtBytes, ll)
		gauge(descL0Files, x.L0Files, ll)
		gauge(descL0Sublevels, x.L0Sublevels, ll)
		gauge(descWAL, x.WALBytes, ll)
		gauge(descDisk, x.DiskBytes, ll)
	}
}

// addStateMetrics reports an operator's keyed backend (just opened)
// until removeStateMetrics.
func (t *task) addStateMetrics(st *operatorState, be statebackend.Backend) error {
	if t.stateMetrics == nil {
		c, err := stateCollectorOf(t.reg.inner)
		if err != nil {
			return err
		}
		t.stateMetrics = c
	}
	st.metrics = &stateEntry{be: be, labels: []string{t.job, t.d.GetGraph().GetName(), st.vi.id, strconv.Itoa(t.subtask), st.backendType}}
	t.stateMetrics.add(st.metrics)
	return nil
}

// removeStateMetrics stops reporting an operator's keyed backend.
func (t *task) removeStateMetrics(st *operatorState) {
	if st.metrics != nil {
		t.stateMetrics.remove(st.metrics)
		st.metrics = nil
	}
}

// publishStates publishes the counts of every keyed backend of the chain
// (the task goroutine, with the other slow metrics).
func (t *task) publishStates() {
	for _, vi := range t.vertices {
		if st := vi.state; st != nil && st.keyed != nil {
			st.keyed.PublishMetrics()
		}
	}
}

// StateCacheMetrics reports the block cache the Pebble state backends of
// a TaskManager share (TaskEnv.StateCache), read on scrape. Release it
// before the cache is unreferenced.
type StateCacheMetrics struct {
	mu    sync.Mutex
	cache *pebble.Cache // nil once released
}

var (
	descCacheHits = prometheus.NewDesc("flow_state_pebble_block_cache_hits_total",
		"Block reads of the Pebble state backends served by the TaskManager's shared block cache.", nil, nil)
	descCacheMisses = prometheus.NewDesc("flow_state_pebble_block_cache_misses_total",
		"Block reads of the Pebble state backends that missed the TaskManager's shared block cache.", nil, nil)
	descCacheSize = prometheus.NewDesc("flow_state_pebble_block_cache_size_bytes",
		"Bytes held by the TaskManager's shared Pebble block cache.", nil, nil)
	descCacheCapacity = prometheus.NewDesc("flow_state_pebble_block_cache_capacity_bytes",
		"Capacity of the TaskManager's shared Pebble block cache.", nil, nil)
)

// NewStateCacheMetrics returns the metrics of c; register them.
func NewStateCacheMetrics(c *pebble.Cache) *StateCacheMetrics { return &StateCacheMetrics{cache: c} }

// Release stops reading the cache (it reports nothing after).
func (m *StateCacheMetrics) Release() {
	m.mu.Lock()
	m.cache = nil
	m.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *StateCacheMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCacheHits
	ch <- descCacheMisses
	ch <- descCacheSize
	ch <- descCacheCapacity
}

// Collect implements prometheus.Collector.
func (m *StateCacheMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cache == nil {
		return
	}
	cm := m.cache.Metrics()
	ch <- prometheus.MustNewConstMetric(descCacheHits, prometheus.CounterValue, float64(cm.Hits))
	ch <- prometheus.MustNewConstMetric(descCacheMisses, prometheus.CounterValue, float64(cm.Misses))
	ch <- prometheus.MustNewConstMetric(descCacheSize, prometheus.GaugeValue, float64(cm.Size))
	ch <- prometheus.MustNewConstMetric(descCacheCapacity, prometheus.GaugeValue, float64(m.cache.MaxSize()))
}
