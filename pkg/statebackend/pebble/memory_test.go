package pebble_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

// rssBytes reads the resident set size of this process.
func rssBytes(t testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatalf("read RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parse VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// BenchmarkMemory10MKeys measures the resident memory of a Pebble backend
// holding 10 million keys (FLOW_STATE_MEMTEST=<keys> overrides) against its
// configured budget. It takes a few tens of seconds, so it is a benchmark
// that CI does not run; the iteration count is ignored:
//
//	go test ./pkg/statebackend/pebble -run XXX -bench Memory10MKeys -benchtime=1x -v
func BenchmarkMemory10MKeys(t *testing.B) {
	n := 10_000_000
	if env := os.Getenv("FLOW_STATE_MEMTEST"); env != "" {
		var err error
		if n, err = strconv.Atoi(env); err != nil || n < 1 {
			t.Fatalf("FLOW_STATE_MEMTEST=%q: want a positive number of keys", env)
		}
	}
	const budget = 256 << 20
	cacheBytes, memtable := pebble.SplitBudget(budget, 1)
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	dir := t.TempDir()
	b, err := pebble.Open(dir, pebble.Options{Cache: cache, MemTableSize: memtable})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, err := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	if err != nil {
		t.Fatal(err)
	}
	rss0 := rssBytes(t)
	start := time.Now()
	key := make([]byte, 0, 16)
	for i := 0; i < n; i++ {
		key = fmt.Appendf(key[:0], "user-%010d", i)
		b.SetCurrentKey(key, keygroup.Assign(key, keygroup.DefaultMaxParallelism))
		if err := v.Update(int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	writeDur := time.Since(start)
	// Random reads fill the block cache.
	start = time.Now()
	const reads = 500000
	for r := 0; r < reads; r++ {
		i := rand.IntN(n)
		key = fmt.Appendf(key[:0], "user-%010d", i)
		b.SetCurrentKey(key, keygroup.Assign(key, keygroup.DefaultMaxParallelism))
		got, err := v.Value()
		if err != nil || got != int64(i) {
			t.Fatalf("key %d = %d, %v", i, got, err)
		}
	}
	readDur := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss := rssBytes(t)
	var disk int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			disk += info.Size()
		}
	}
	t.Logf("keys=%d budget=%dMiB (cache %dMiB, memtable %dMiB x2) write=%v (%.0f keys/s) reads=%d in %v (%.0f/ms)",
		n, budget>>20, cacheBytes>>20, memtable>>20, writeDur.Round(time.Millisecond), float64(n)/writeDur.Seconds(), reads, readDur.Round(time.Millisecond), float64(reads)/float64(readDur.Milliseconds()))
	t.Logf("RSS before=%dMiB after=%dMiB growth=%dMiB; Go heap in use=%dMiB; sys=%dMiB; DB on disk=%dMiB",
		rss0>>20, rss>>20, (rss-rss0)>>20, ms.HeapInuse>>20, ms.Sys>>20, disk>>20)
	// Resident growth must stay within the budget plus a fixed allowance
	// for Pebble's metadata (index/filter blocks live in the cache too) and
	// the Go runtime.
	if limit := int64(budget + 128<<20); rss-rss0 > limit {
		t.Fatalf("RSS grew by %dMiB, more than budget+128MiB = %dMiB", (rss-rss0)>>20, limit>>20)
	}
}
