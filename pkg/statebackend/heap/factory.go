package heap

import "github.com/flowrt/flow/pkg/statebackend"

// Name is the heap backend's name in JobGraph.state_backend.type and in
// statebackend.Lookup.
const Name = "heap"

func init() { statebackend.Register(Factory{}) }

// Factory opens heap backends; it is registered as Name. Config.Dir, the
// tuning fields and SharedCache are ignored: the state is in Go maps.
type Factory struct{}

// Name implements statebackend.Factory.
func (Factory) Name() string { return Name }

// OnDisk implements statebackend.Factory: false.
func (Factory) OnDisk() bool { return false }

// Open implements statebackend.Factory: an empty heap backend (New).
func (Factory) Open(cfg statebackend.Config) (statebackend.Backend, error) {
	e, err := New(cfg.Options)
	if err != nil {
		return nil, err
	}
	return e, nil
}
