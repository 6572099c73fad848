package snapshot_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

// fillValues writes n keys of one int64 value state.
func fillValues(b *testing.B, e statebackend.Backend, n int) *api.ValueState[int64] {
	v, err := api.GetValueState(e, api.ValueStateDescriptor[int64]{Name: "count", Codec: api.Int64Codec()})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		setKey(e, fmt.Sprint("key-", i))
		if err := v.Update(int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.Flush(); err != nil {
		b.Fatal(err)
	}
	return v
}

// The synchronous pause of a snapshot on the task goroutine, 1M keys, with
// 10k keys updated between snapshots (ns/op is the pause).
func BenchmarkSyncPause1M(b *testing.B) {
	const n, changed = 1_000_000, 10_000
	run := func(b *testing.B, e statebackend.Backend, v *api.ValueState[int64]) {
		k, err := snapshot.NewKeyed(e, snapshot.KeyedOptions{WorkDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			for j := 0; j < changed; j++ {
				setKey(e, fmt.Sprint("key-", (i*changed+j)%n))
				if err := v.Update(int64(-i)); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			p, err := k.Sync(int64(i), snapshot.Checkpoint)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := p.Discard(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.Run("heap", func(b *testing.B) {
		e := newHeap(b, all)
		run(b, e, fillValues(b, e, n))
	})
	b.Run("pebble", func(b *testing.B) {
		e, err := pebble.Open(filepath.Join(b.TempDir(), "db"), pebbleOpts(all))
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		run(b, e, fillValues(b, e, n))
	})
}

// Async of a heap snapshot (sort, encode, write to file:// storage), 1M keys.
func BenchmarkHeapAsync1M(b *testing.B) {
	e := newHeap(b, all)
	fillValues(b, e, 1_000_000)
	k, err := snapshot.NewKeyed(e, snapshot.KeyedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	st := newStorage(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p, err := k.Sync(int64(i), snapshot.Full)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := p.Async(ctx, snapshot.Target{Store: st, Dir: fmt.Sprint("chk-", i), Name: "op"})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.StateSize), "bytes")
	}
}
