package statebackend

import (
	"sync/atomic"
	"time"
)

// Metrics of a keyed backend.
//
// The task goroutine is the only writer. It counts in plain fields on the
// access path (timers registered and fired, expired TTL entries removed,
// state accesses) and copies them into atomics when it calls
// PublishMetrics, between records. Engine.Metrics reads the atomics (and
// what the store reports) on any goroutine: a Prometheus scrape never
// touches the access path and never races it.
//
// State access latency is sampled: one access in AccessSampleEvery is
// timed (two clock reads) and recorded in an atomic histogram; the others
// pay an increment and a mask test.

// AccessSampleEvery is the sampling period of the state access latency
// histograms: one access in AccessSampleEvery is timed.
const AccessSampleEvery = 1024

// AccessLatencyBuckets are the upper bounds, in seconds, of the state
// access latency histograms.
var AccessLatencyBuckets = [...]float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1}

// Histogram is a snapshot of a latency histogram: Buckets[i] counts the
// observations <= AccessLatencyBuckets[i] (cumulative, as Prometheus
// wants them), Count all of them, Sum their total in seconds.
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets [len(AccessLatencyBuckets)]uint64
}

// latencyHist is an atomic histogram over AccessLatencyBuckets. It is
// written on sampled accesses only.
type latencyHist struct {
	counts [len(AccessLatencyBuckets) + 1]atomic.Uint64 // per bucket; the last: above every bound
	sumNs  atomic.Int64
}

func (h *latencyHist) observe(from time.Time) {
	d := time.Since(from)
	s := d.Seconds()
	i := 0
	for i < len(AccessLatencyBuckets) && s > AccessLatencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(d.Nanoseconds())
}

func (h *latencyHist) snapshot() Histogram {
	var out Histogram
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if i < len(out.Buckets) {
			out.Buckets[i] = cum
		}
	}
	out.Count = cum
	out.Sum = float64(h.sumNs.Load()) / 1e9
	return out
}

// engineMetrics is the Engine's part of its metrics.
type engineMetrics struct {
	// Owned by the task goroutine.
	accesses                      uint64
	timersRegistered, timersFired int64

	// Published by PublishMetrics, read by Metrics.
	pubAccesses, pubRegistered, pubFired, pubExpired atomic.Int64
	read, write                                      latencyHist
}

// sample counts an access and reports whether to time it.
func (m *engineMetrics) sample() bool {
	m.accesses++
	return m.accesses&(AccessSampleEvery-1) == 0
}

// MetricsStore is implemented by Stores that report their size and
// internals (heap and pebble do).
type MetricsStore interface {
	// PublishMetrics runs on the goroutine that owns the store: it copies
	// what the store counts in plain fields to where StoreMetrics reads it.
	PublishMetrics()
	// StoreMetrics may run on any goroutine, concurrently with the owner's
	// use of the store, and after Close (then it reports zeros).
	StoreMetrics() StoreMetrics
}

// StoreMetrics is what a store reports about itself.
type StoreMetrics struct {
	// Keys and Bytes: the state the store holds (see docs/observability.md
	// for what each store counts; Pebble's are estimates).
	Keys, Bytes int64
	// LSM is Pebble's own view of its DB (nil for the heap).
	LSM *LSMMetrics
}

// LSMMetrics are the internals of an LSM store's DB (Pebble's Metrics).
type LSMMetrics struct {
	MemtableBytes       int64 // allocated by memtables
	CompactionDebtBytes int64 // estimated bytes to compact for the LSM to reach a stable shape
	L0Files             int64 // SST files in level 0
	L0Sublevels         int64 // read amplification of level 0
	WALBytes            int64 // live data in the write-ahead log (0 with the WAL off, the default)
	DiskBytes           int64 // every file of the DB on disk
}

// Metrics is a snapshot of a backend's metrics. Counts are cumulative
// since the backend was opened, up to its last PublishMetrics.
type Metrics struct {
	StoreMetrics
	// Accesses counts state accesses (reads and writes through state
	// handles).
	Accesses int64
	// TimersRegistered counts timer registrations (a timer already
	// registered counts again); TimersFired the timers fired.
	TimersRegistered, TimersFired int64
	// TTLExpired counts expired TTL entries removed: values, list
	// elements and map entries, on access or by a sweep.
	TTLExpired int64
	// ReadLatency and WriteLatency are the sampled access latencies.
	ReadLatency, WriteLatency Histogram
}

// PublishMetrics makes the backend's counts visible to Metrics. The
// goroutine that uses the backend calls it, between records (the runtime:
// at most every 100 ms).
func (e *Engine) PublishMetrics() {
	m := &e.mx
	m.pubAccesses.Store(int64(m.accesses))
	m.pubRegistered.Store(m.timersRegistered)
	m.pubFired.Store(m.timersFired)
	var expired int64
	for _, sm := range e.byID {
		if sm != nil {
			expired += sm.expired
		}
	}
	m.pubExpired.Store(expired)
	if ms, ok := e.store.(MetricsStore); ok {
		ms.PublishMetrics()
	}
}

// Metrics returns the backend's metrics as of its last PublishMetrics
// (the store's own figures may be newer). Any goroutine may call it, also
// after Close.
func (e *Engine) Metrics() Metrics {
	m := &e.mx
	out := Metrics{
		Accesses:         m.pubAccesses.Load(),
		TimersRegistered: m.pubRegistered.Load(),
		TimersFired:      m.pubFired.Load(),
		TTLExpired:       m.pubExpired.Load(),
		ReadLatency:      m.read.snapshot(),
		WriteLatency:     m.write.snapshot(),
	}
	if ms, ok := e.store.(MetricsStore); ok {
		out.StoreMetrics = ms.StoreMetrics()
	}
	return out
}
