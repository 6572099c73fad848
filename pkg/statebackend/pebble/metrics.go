package pebble

import (
	"sync"

	"github.com/flowrt/flow/pkg/statebackend"
)

// storeMetrics guards the DB against a scrape that reads its metrics
// while Close closes it: StoreMetrics holds the read lock, Close takes
// the write lock once, never on the access path.
type storeMetrics struct {
	mu     sync.RWMutex
	closed bool
}

var _ statebackend.MetricsStore = (*store)(nil)

// PublishMetrics implements statebackend.MetricsStore: nothing to do,
// StoreMetrics asks Pebble.
func (s *store) PublishMetrics() {}

// StoreMetrics implements statebackend.MetricsStore from Pebble's
// DB.Metrics (safe on any goroutine) and its table statistics. Keys is an
// estimate: the entries of the live SST files less twice their deletions
// (what is still in memtables is not counted, overwritten keys count once
// per table; Flow's timers and state registry are keys too); Bytes is the size of the
// live SST files plus the memtables.
func (s *store) StoreMetrics() statebackend.StoreMetrics {
	s.mx.mu.RLock()
	defer s.mx.mu.RUnlock()
	if s.mx.closed {
		return statebackend.StoreMetrics{}
	}
	m := s.db.Metrics()
	out := statebackend.StoreMetrics{
		Bytes: m.Total().TablesSize + int64(m.MemTable.Size),
		LSM: &statebackend.LSMMetrics{
			MemtableBytes:       int64(m.MemTable.Size),
			CompactionDebtBytes: int64(m.Compact.EstimatedDebt),
			L0Files:             m.Levels[0].TablesCount,
			L0Sublevels:         int64(m.Levels[0].Sublevels),
			WALBytes:            int64(m.WAL.Size),
			DiskBytes:           int64(m.DiskSpaceUsage()),
		},
	}
	if levels, err := s.db.SSTables(); err == nil {
		// Each deletion is an entry that cancels another (as RocksDB
		// estimates its number of keys).
		var n int64
		for _, l := range levels {
			for _, t := range l {
				n += int64(t.TableStats.NumEntries) - 2*int64(t.TableStats.NumDeletions)
			}
		}
		out.Keys = max(n, 0)
	}
	return out
}

// markClosed stops StoreMetrics from reading the DB; Close calls it before
// closing the DB.
func (s *store) markClosed() {
	s.mx.mu.Lock()
	s.mx.closed = true
	s.mx.mu.Unlock()
}
