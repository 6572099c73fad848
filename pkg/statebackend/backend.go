package statebackend

import (
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
)

// Backend is the keyed state backend of one keyed operator in one subtask,
// as the runtime drives it. *Engine implements it (heap.New and
// pebble.Open return one).
//
// Contract: one goroutine (the task's) calls every method; no locks are
// taken on the access path. Before each record and each timer the runtime
// calls SetCurrentKey; the operator reaches state through the
// api.KeyedStateStore and timers through the api.TimerService of its
// context, both of which are this backend.
type Backend interface {
	api.KeyedStateStore
	api.TimerService

	SetCurrentKey(key []byte, keyGroup int)
	KeyGroups() keygroup.Range
	MaxParallelism() int

	// AdvanceWatermark and AdvanceProcessingTime fire due timers in
	// timestamp order with their key current.
	AdvanceWatermark(ts int64, fire func(api.Timer) error) error
	AdvanceProcessingTime(now int64, fire func(api.Timer) error) error
	// NextTimer is the earliest timer of a domain.
	NextTimer(d api.TimeDomain) (int64, bool, error)

	// CleanupExpired is a full TTL sweep; SweepExpired an incremental one.
	CleanupExpired() error
	SweepExpired(maxKeyGroups int) (roundDone bool, err error)

	// States, Iterate, RestoreStates and Ingest move state in the canonical
	// form (snapshots, rescaling, switching backends).
	States() []api.StateSpec
	Iterate(r keygroup.Range, fn func(Entry) error) error
	RestoreStates(specs []api.StateSpec) error
	Ingest(e Entry) error

	// Flush commits buffered writes; Close flushes and releases resources.
	Flush() error
	Close() error

	// PublishMetrics (on the owning goroutine) makes the counts visible to
	// Metrics, which any goroutine may call (metrics.go).
	PublishMetrics()
	Metrics() Metrics
}

var _ Backend = (*Engine)(nil)
