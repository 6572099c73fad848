package statebackendtest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

// Metrics tests: the counts a backend reports equal what the test did,
// and only after PublishMetrics.

func testMetricsTimers(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	const n = 50
	for i := range n {
		setKey(b, fmt.Sprintf("k%d", i))
		ok(t, b.RegisterEventTimeTimer(int64(100+i), nil))
		ok(t, b.RegisterProcessingTimeTimer(int64(100+i), nil))
	}
	setKey(b, "k0")
	ok(t, b.DeleteEventTimeTimer(100, nil))
	if m := b.Metrics(); m.TimersRegistered != 0 {
		t.Fatalf("timers registered before PublishMetrics = %d, want 0", m.TimersRegistered)
	}
	b.PublishMetrics()
	if m := b.Metrics(); m.TimersRegistered != 2*n || m.TimersFired != 0 {
		t.Fatalf("after %d registrations: registered %d, fired %d; want %d, 0", 2*n, m.TimersRegistered, m.TimersFired, 2*n)
	}
	fired := 0
	count := func(api.Timer) error { fired++; return nil }
	ok(t, b.AdvanceWatermark(100+n/2, count))    // k1..k25: 25 event-time timers (k0's was deleted)
	ok(t, b.AdvanceProcessingTime(100+9, count)) // k0..k9: 10
	b.PublishMetrics()
	if m := b.Metrics(); m.TimersFired != int64(fired) || fired != n/2+10 {
		t.Fatalf("timers fired = %d, the fire callback ran %d times, want %d", m.TimersFired, fired, n/2+10)
	}
}

func testMetricsTTL(t *testing.T, open opener) {
	clk := NewFakeClock(1000)
	b := open(t, statebackend.Options{Clock: clk})
	cfg := ttl(100*time.Millisecond, api.OnCreateAndWrite, api.NeverReturnExpired)
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec(), TTL: cfg}))(t)
	l := must(api.GetListState(b, api.ListStateDescriptor[int64]{Name: "l", Codec: api.Int64Codec(), TTL: cfg}))(t)
	m := must(api.GetMapState(b, api.MapStateDescriptor[string, int64]{Name: "m", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec(), TTL: cfg}))(t)
	const keys = 10
	for i := range keys {
		setKey(b, fmt.Sprintf("k%d", i))
		ok(t, v.Update(1))
		ok(t, l.Add(1))
		ok(t, l.Add(2))
		ok(t, m.Put("a", 1))
		ok(t, m.Put("b", 2))
		ok(t, m.Put("c", 3))
	}
	clk.Set(1050)
	setKey(b, "k0")
	ok(t, v.Update(2)) // refreshed: alive at 1100
	clk.Set(1100)
	b.PublishMetrics()
	if got := b.Metrics().TTLExpired; got != 0 {
		t.Fatalf("TTL removed before expiry = %d", got)
	}
	// Removed on access: k1's value, k2's list (2 elements), k3's map
	// entry a (Get) and k4's entries (Range: 3).
	setKey(b, "k1")
	if _, found, err := v.Lookup(); err != nil || found {
		t.Fatalf("expired value found %v, err %v", found, err)
	}
	setKey(b, "k2")
	if got := must(l.Get())(t); len(got) != 0 {
		t.Fatalf("expired list = %v", got)
	}
	setKey(b, "k3")
	if _, found, err := m.Get("a"); err != nil || found {
		t.Fatalf("expired map entry found %v, err %v", found, err)
	}
	setKey(b, "k4")
	ok(t, m.Range(func(string, int64) bool { return true }))
	b.PublishMetrics()
	if got, want := b.Metrics().TTLExpired, int64(1+2+1+3); got != want {
		t.Fatalf("TTL removed on access = %d, want %d", got, want)
	}
	// The full sweep removes the rest: 8 values, 9 lists of 2, the 3 map
	// entries of 8 keys and k3's other 2.
	ok(t, b.CleanupExpired())
	b.PublishMetrics()
	if got, want := b.Metrics().TTLExpired, int64(7+(8+18+26)); got != want {
		t.Fatalf("TTL removed after the sweep = %d, want %d", got, want)
	}
}

func testMetricsAccesses(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()}))(t)
	setKey(b, "k")
	const writes, reads = 3 * statebackend.AccessSampleEvery, 2 * statebackend.AccessSampleEvery
	for i := range writes {
		ok(t, v.Update(int64(i)))
	}
	for range reads {
		must(v.Value())(t)
	}
	b.PublishMetrics()
	m := b.Metrics()
	if m.Accesses != writes+reads {
		t.Fatalf("accesses = %d, want %d", m.Accesses, writes+reads)
	}
	if m.WriteLatency.Count != 3 || m.ReadLatency.Count != 2 {
		t.Fatalf("sampled writes %d, reads %d; want 3 and 2 (one in %d)", m.WriteLatency.Count, m.ReadLatency.Count, statebackend.AccessSampleEvery)
	}
	last := len(m.WriteLatency.Buckets) - 1
	if m.WriteLatency.Buckets[last] > m.WriteLatency.Count || m.WriteLatency.Sum <= 0 {
		t.Fatalf("write histogram inconsistent: %+v", m.WriteLatency)
	}
	if m.Keys != 1 && m.LSM == nil {
		t.Fatalf("heap keys = %d, want 1", m.Keys)
	}
}

// testMetricsConcurrentScrape reads Metrics on another goroutine while the
// owner writes, publishes and closes the backend (run with -race).
func testMetricsConcurrentScrape(t *testing.T, open opener) {
	b := open(t, statebackend.Options{})
	v := must(api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()}))(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_ = b.Metrics()
			}
		}
	}()
	for i := range 20000 {
		setKey(b, fmt.Sprintf("k%d", i%500))
		ok(t, v.Update(int64(i)))
		ok(t, b.RegisterEventTimeTimer(int64(i), nil))
		if i%1000 == 0 {
			b.PublishMetrics()
		}
	}
	b.PublishMetrics()
	ok(t, b.Close()) // the suite's Close is then a second one
	_ = b.Metrics()
	close(stop)
	wg.Wait()
	if m := b.Metrics(); m.TimersRegistered != 20000 {
		t.Fatalf("timers registered = %d, want 20000", m.TimersRegistered)
	}
}
