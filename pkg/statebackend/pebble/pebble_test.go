package pebble_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	"github.com/flowrt/flow/pkg/statebackend/statebackendtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	statebackendtest.Run(t, func(t *testing.T, opts statebackend.Options) statebackend.Backend {
		// A small batch so that commits happen in the middle of the tests.
		b, err := pebble.Open(t.TempDir(), pebble.Options{Options: opts, BatchSize: 4 << 10, CacheSize: 8 << 20, MemTableSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}
