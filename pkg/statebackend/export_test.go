package statebackend

import "github.com/flowrt/flow/pkg/api/rawstate"

// UnsampledValue returns the get and put of a value state without the
// access counting and sampling of its Get and Put (for the overhead
// benchmark).
func UnsampledValue(s rawstate.State) (get func() ([]byte, bool, error), put func([]byte) error) {
	v := s.(*valueState)
	return v.get, v.put
}
