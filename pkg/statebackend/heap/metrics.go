package heap

import (
	"sync/atomic"
	"unsafe"

	"github.com/flowrt/flow/pkg/statebackend"
)

// storeMetrics is what the heap store reports (statebackend.MetricsStore):
// computed on the task goroutine by PublishMetrics from its slot counts
// and the bytes its writes add and remove (a few additions per write),
// read by StoreMetrics on any goroutine.
type storeMetrics struct {
	// held: bytes of cell keys, out-of-line values and map entries (keys
	// and values), kept up to date by every write on the task goroutine.
	held        int64
	keys, bytes atomic.Int64
}

// outOfLineBytes is the size of a value cell's value stored outside its
// slot.
func outOfLineBytes(sl *slot) int64 {
	if sl.n == outOfLine {
		return int64(len(sl.ext.val))
	}
	return 0
}

// entryBytes is the size of a map cell's entries.
func entryBytes(sl *slot) int64 {
	if sl.ext == nil || sl.ext.entries == nil {
		return 0
	}
	return sl.ext.nbytes
}

var _ statebackend.MetricsStore = (*store)(nil)

// PublishMetrics implements statebackend.MetricsStore: keys are the live
// cells (one key and namespace of one state); bytes are the memory of the
// allocated slot chunks plus the cell keys, the values stored outside
// their slots (over inlineCap bytes) and the map entries' keys and values
// (not Go's map and allocation overhead).
func (s *store) PublishMetrics() {
	var keys, chunks int64
	for _, st := range s.states {
		if st != nil {
			keys += int64(st.next) - int64(len(st.free))
			chunks += int64(len(st.chunks))
		}
	}
	s.mx.keys.Store(keys)
	s.mx.bytes.Store(chunks*chunkLen*int64(unsafe.Sizeof(slot{})) + s.mx.held)
}

// StoreMetrics implements statebackend.MetricsStore.
func (s *store) StoreMetrics() statebackend.StoreMetrics {
	return statebackend.StoreMetrics{Keys: s.mx.keys.Load(), Bytes: s.mx.bytes.Load()}
}
