// Package rawstate holds the byte-level state handles between state
// backends and the typed state of pkg/api: what a backend implements
// (pkg/statebackend), and what a built-in operator uses when it stores
// pre-encoded rows itself (pkg/operators/join). Operators written against
// the SDK do not need it: they use api.GetValueState, GetListState,
// GetMapState and the operator states (api.GetListOperatorState,
// GetBroadcastState), or pkg/api/typed.
//
// Byte slices returned by handles are valid until the next call on the
// store; callers copy (decode) what they keep. Slices passed in are not
// retained.
package rawstate

// State is the part common to all keyed handles.
type State interface {
	// SetNamespace scopes later accesses of this handle to ns (nil or empty
	// is the default namespace). The slice is copied.
	SetNamespace(ns []byte)
	// Clear removes the state's value for the current key and namespace.
	Clear() error
}

// Value holds one value per key and namespace.
type Value interface {
	State
	Get() ([]byte, bool, error)
	Put(v []byte) error
}

// List holds a list per key and namespace.
type List interface {
	State
	Append(v []byte) error
	// Range calls fn for each element in insertion order until fn returns false.
	Range(fn func(v []byte) bool) error
}

// Map holds a map per key and namespace.
type Map interface {
	State
	Get(userKey []byte) ([]byte, bool, error)
	Put(userKey, v []byte) error
	Delete(userKey []byte) error
	// Range calls fn for each entry until fn returns false. The order is the
	// byte order of user keys on ordered backends (Pebble) and unspecified
	// on the heap backend.
	Range(fn func(userKey, v []byte) bool) error
}

// OperatorList is an in-memory list of encoded elements (operator state).
// Get returns the store's slice: do not modify it.
type OperatorList interface {
	Get() [][]byte
	// Update replaces the list; the slices are copied.
	Update(vs [][]byte)
	Append(v []byte)
}

// BroadcastMap is an in-memory map of encoded entries (broadcast state).
type BroadcastMap interface {
	Get(k []byte) ([]byte, bool)
	Put(k, v []byte)
	Delete(k []byte)
	Range(fn func(k, v []byte) bool)
	Clear()
}
