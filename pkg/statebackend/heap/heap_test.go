package heap_test

import (
	"testing"

	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/statebackendtest"
)

func TestConformance(t *testing.T) {
	statebackendtest.Run(t, func(t *testing.T, opts statebackend.Options) statebackend.Backend {
		b, err := heap.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestBadOptions(t *testing.T) {
	if _, err := heap.New(statebackend.Options{MaxParallelism: 4, KeyGroups: statebackendRange(2, 9)}); err == nil {
		t.Fatal("key groups beyond max parallelism accepted")
	}
}
