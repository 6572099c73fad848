package pebble_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

func setKey(b statebackend.Backend, key string) {
	b.SetCurrentKey([]byte(key), keygroup.Assign([]byte(key), b.MaxParallelism()))
}

// Reopening a directory finds states, their registrations and timers.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	cache := pebble.NewCache(8 << 20)
	defer cache.Unref()
	opts := pebble.Options{Cache: cache, Compression: "zstd"}
	b, err := pebble.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	v, err := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := api.GetListState(b, api.ListStateDescriptor[string]{Name: "l", Codec: api.StringCodec()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		setKey(b, fmt.Sprint(i))
		if err := v.Update(int64(i)); err != nil {
			t.Fatal(err)
		}
		if err := l.Add("x"); err != nil {
			t.Fatal(err)
		}
		if err := b.RegisterEventTimeTimer(int64(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b, err = pebble.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Declared in another order: ids come from the saved registry.
	l2, err := api.GetListState(b, api.ListStateDescriptor[string]{Name: "l", Codec: api.StringCodec()})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.GetValueState(b, api.ValueStateDescriptor[string]{Name: "l", Codec: api.StringCodec()}); err == nil {
		t.Fatal("saved registration not enforced")
	}
	for i := 0; i < 1000; i++ {
		setKey(b, fmt.Sprint(i))
		if got, err := v2.Value(); err != nil || got != int64(i) {
			t.Fatalf("key %d: %d %v", i, got, err)
		}
		if got, err := l2.Get(); err != nil || len(got) != 1 {
			t.Fatalf("key %d list: %v %v", i, got, err)
		}
	}
	n := 0
	if err := b.AdvanceWatermark(math.MaxInt64, func(api.Timer) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1000 {
		t.Fatalf("fired %d timers after reopen", n)
	}
}

func TestBadOptions(t *testing.T) {
	if _, err := pebble.Open(t.TempDir(), pebble.Options{Compression: "lz77"}); err == nil {
		t.Fatal("unknown compression accepted")
	}
	if _, err := pebble.Open("", pebble.Options{}); err == nil {
		t.Fatal("empty dir accepted")
	}
	if _, err := pebble.Open(t.TempDir(), pebble.Options{Options: statebackend.Options{MaxParallelism: -1}}); err == nil {
		t.Fatal("bad max parallelism accepted")
	}
}

// A long list grows by merges and is read back whole, across batch commits
// and memtable flushes.
func TestLongList(t *testing.T) {
	b, err := pebble.Open(t.TempDir(), pebble.Options{BatchSize: 1 << 10, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l, err := api.GetListState(b, api.ListStateDescriptor[int64]{Name: "l", Codec: api.Int64Codec()})
	if err != nil {
		t.Fatal(err)
	}
	setKey(b, "k")
	const n = 20000
	for i := 0; i < n; i++ {
		if err := l.Add(int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.Get()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n || got[0] != 0 || got[n-1] != n-1 {
		t.Fatalf("list of %d, first %d last %d", len(got), got[0], got[len(got)-1])
	}
	for i, v := range got {
		if v != int64(i) {
			t.Fatalf("element %d = %d", i, v)
		}
	}
}

func TestSplitBudget(t *testing.T) {
	c, mt := pebble.SplitBudget(1<<30, 4)
	if c+int64(mt)*8 != 1<<30 || mt != (1<<30)/32 {
		t.Fatalf("cache %d memtable %d", c, mt)
	}
	if c, mt := pebble.SplitBudget(1<<20, 100); c < 1<<20 || mt < 1<<20 {
		t.Fatalf("tiny budget: cache %d memtable %d", c, mt)
	}
}
