package heap

import (
	"sync/atomic"
	"unsafe"

	"github.com/flowrt/flow/pkg/statebackend"
)

// storeMetrics is what the heap store reports (statebackend.MetricsStore):
// computed on the task goroutine by PublishMetrics from what the store
// keeps anyway (its slot counts; no bookkeeping on the access path), read
// by StoreMetrics on any goroutine.
type storeMetrics struct {
	keys, bytes atomic.Int64
}

var _ statebackend.MetricsStore = (*store)(nil)

// PublishMetrics implements statebackend.MetricsStore: keys are the live
// cells (one key and namespace of one state), bytes the memory of the
// allocated slot chunks. Values of more than inlineCap bytes and map
// entries live outside the slots and are not counted.
func (s *store) PublishMetrics() {
	var keys, chunks int64
	for _, st := range s.states {
		if st != nil {
			keys += int64(st.next) - int64(len(st.free))
			chunks += int64(len(st.chunks))
		}
	}
	s.mx.keys.Store(keys)
	s.mx.bytes.Store(chunks * chunkLen * int64(unsafe.Sizeof(slot{})))
}

// StoreMetrics implements statebackend.MetricsStore.
func (s *store) StoreMetrics() statebackend.StoreMetrics {
	return statebackend.StoreMetrics{Keys: s.mx.keys.Load(), Bytes: s.mx.bytes.Load()}
}
