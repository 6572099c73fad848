package statebackend_test

import (
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/rawstate"
	"github.com/flowrt/flow/pkg/statebackend"
)

// BenchmarkAccessSampling is the overhead of counting every state access
// and timing one in AccessSampleEvery: a value state's read-modify-write
// (Get then Put) through the sampled methods against the same work
// without them, in the same run. See docs/performance.md (observability).
func BenchmarkAccessSampling(b *testing.B) {
	ks := benchKeySet()
	forBackends(b, func(b *testing.B, be statebackend.Backend) {
		raw, err := be.KeyedState(api.StateSpec{Name: "v", Kind: api.StateValue, ValueCodec: "int64"})
		if err != nil {
			b.Fatal(err)
		}
		get, put := statebackend.UnsampledValue(raw)
		val := []byte("12345678")
		rmw := func(b *testing.B, get func() ([]byte, bool, error), put func([]byte) error) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				k := ks[i%benchKeys]
				be.SetCurrentKey(k.key, k.kg)
				if _, _, err := get(); err != nil {
					b.Fatal(err)
				}
				if err := put(val); err != nil {
					b.Fatal(err)
				}
			}
		}
		for _, k := range ks { // every key exists: both variants update
			be.SetCurrentKey(k.key, k.kg)
			if err := put(val); err != nil {
				b.Fatal(err)
			}
		}
		// Alternate the two, so that drift in the machine's load hits both.
		for range 3 {
			b.Run("unsampled", func(b *testing.B) { rmw(b, get, put) })
			b.Run("sampled", func(b *testing.B) { rmw(b, raw.(rawstate.Value).Get, raw.(rawstate.Value).Put) })
		}
	})
}
