package snapshot_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/keygroup"
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

// The write path after a heap Sync, 1M keys over 128 key groups: the
// first write to a frozen chunk (128 cells in insertion order) copies that
// chunk; later writes to it do not copy. "first-write-per-kg" times one
// update of a key in each key group right after a Sync (each a different
// chunk; ns/op covers all 128); "10k-updates" times 10k updates of keys
// spread over the whole state with a snapshot pending ("pending") and
// without ("none").
func BenchmarkWriteAfterSync1M(b *testing.B) {
	const n = 1_000_000
	e := newHeap(b, all)
	v := fillValues(b, e, n)
	k, err := snapshot.NewKeyed(e, snapshot.KeyedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	// One key per key group.
	perKG := make([]string, maxPar)
	for i, found := 0, 0; found < maxPar; i++ {
		key := fmt.Sprint("key-", i)
		kg := keygroup.Assign([]byte(key), maxPar)
		if perKG[kg] == "" {
			perKG[kg] = key
			found++
		}
	}
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = fmt.Sprint("key-", (i*97)%n)
	}
	update := func(key string, x int64) {
		setKey(e, key)
		if err := v.Update(x); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("first-write-per-kg", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			p, err := k.Sync(int64(i), snapshot.Checkpoint)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			for _, key := range perKG {
				update(key, int64(i))
			}
			b.StopTimer()
			if err := p.Discard(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*maxPar), "ns/first-write")
	})
	for _, pending := range []bool{false, true} {
		name := map[bool]string{false: "10k-updates/none", true: "10k-updates/pending"}[pending]
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				var p *snapshot.KeyedPending
				if pending {
					if p, err = k.Sync(int64(i), snapshot.Checkpoint); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				for _, key := range keys {
					update(key, int64(i))
				}
				b.StopTimer()
				if p != nil {
					if err := p.Discard(); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
		})
	}
}

// The task-side cost of periodic heap checkpoints, as in the keyed count
// job of internal/bench's BenchmarkCheckpointOverhead: 100,000 keys of one
// int64 value state over 128 key groups, each op a get and an update of a
// pseudo-random key (what count.ProcessRecord does), a snapshot every
// 1,000,000 ops. "none" takes no snapshot; "ckpt" takes a Sync and runs
// its Async (sort, encode, write to file:// storage) on another goroutine,
// as the runtime does; "cow-only" takes the Sync and Discards it 100,000
// ops later on the task goroutine (no Async: the copy-on-write cost
// alone). ns/op is the task goroutine's time per op; compare the variants
// of the same run (-count interleaves them).
func BenchmarkUpdatesWithCheckpoints(b *testing.B) {
	const n, every, hold = 100_000, 1_000_000, 100_000
	keys := make([][]byte, n)
	kgs := make([]int, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprint("key-", i))
		kgs[i] = keygroup.Assign(keys[i], maxPar)
	}
	for _, mode := range []string{"none", "ckpt", "cow-only"} {
		b.Run(mode, func(b *testing.B) {
			e := newHeap(b, all)
			v := fillValues(b, e, n)
			k, err := snapshot.NewKeyed(e, snapshot.KeyedOptions{})
			if err != nil {
				b.Fatal(err)
			}
			st := newStorage(b)
			done := make(chan error, 1)
			var held *snapshot.KeyedPending // cow-only
			running, cps := false, 0
			x := uint64(1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if mode != "none" && i%every == 0 {
					if running {
						if err := <-done; err != nil {
							b.Fatal(err)
						}
						running = false
					}
					p, err := k.Sync(int64(i), snapshot.Checkpoint)
					if err != nil {
						b.Fatal(err)
					}
					cps++
					if mode == "cow-only" {
						held = p
					} else {
						running = true
						go func(id int) {
							_, err := p.Async(ctx, snapshot.Target{Store: st, Dir: fmt.Sprint("chk-", id), Name: "op"})
							done <- err
						}(i)
					}
				}
				if held != nil && i%every == hold {
					if err := held.Discard(); err != nil {
						b.Fatal(err)
					}
					held = nil
				}
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				j := x % n
				e.SetCurrentKey(keys[j], kgs[j])
				c, err := v.Value()
				if err != nil {
					b.Fatal(err)
				}
				if err := v.Update(c + 1); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if running {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			if held != nil {
				if err := held.Discard(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cps), "ckpts")
		})
	}
}
