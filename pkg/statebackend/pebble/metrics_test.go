package pebble_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

// A Pebble backend under writes reports its memtable, then (flushed by a
// checkpoint) its disk usage and key estimate; reads move the block cache.
func TestStoreMetrics(t *testing.T) {
	cache := pebble.NewCache(8 << 20)
	defer cache.Unref()
	e, err := pebble.Open(t.TempDir(), pebble.Options{Cache: cache, MemTableSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	v, err := api.GetValueState(e, api.ValueStateDescriptor[string]{Name: "v", Codec: api.StringCodec()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	val := fmt.Sprintf("%0100d", 7)
	key := func(i int) {
		k := []byte(fmt.Sprintf("key-%06d", i))
		e.SetCurrentKey(k, keygroup.Assign(k, e.MaxParallelism()))
	}
	for i := range n {
		key(i)
		if err := v.Update(val); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	m := e.Metrics()
	if m.LSM == nil || m.LSM.MemtableBytes <= 0 || m.Bytes < m.LSM.MemtableBytes {
		t.Fatalf("after %d writes: %+v, LSM %+v: want memtable bytes counted", n, m.StoreMetrics, m.LSM)
	}
	if err := pebble.Checkpoint(e, filepath.Join(t.TempDir(), "cp")); err != nil { // flushes the memtable
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for m = e.Metrics(); m.Keys < n; m = e.Metrics() { // table statistics are collected in the background
		if time.Now().After(deadline) {
			t.Fatalf("key estimate %d after a flush of %d keys", m.Keys, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// (L0 files are not checked: a compaction may have moved them.)
	if m.LSM.DiskBytes < n || m.Bytes <= 0 {
		t.Fatalf("flushed: bytes %d, LSM %+v: want disk usage", m.Bytes, m.LSM)
	}
	before := cache.Metrics()
	for i := 0; i < n; i += 10 {
		key(i)
		if got, err := v.Value(); err != nil || got != val {
			t.Fatalf("read %d: %q, %v", i, got, err)
		}
	}
	after := cache.Metrics()
	if after.Hits <= before.Hits || after.Misses < before.Misses || after.Size <= 0 {
		t.Fatalf("block cache before reads %+v, after %+v: want hits and a size", before, after)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if m := e.Metrics(); m.LSM != nil || m.Keys != 0 {
		t.Fatalf("metrics after Close: %+v", m)
	}
}
