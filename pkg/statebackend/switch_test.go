package statebackend_test

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	"github.com/flowrt/flow/pkg/statebackend/statebackendtest"
)

// State moves heap -> pebble -> heap through the canonical form, TTL
// timestamps and timers included.
func TestSwitchBackends(t *testing.T) {
	clk := statebackendtest.NewFakeClock(1000)
	opts := statebackend.Options{Clock: clk}
	h, err := heap.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &api.TTLConfig{TTL: time.Second}
	v, _ := api.GetValueState(h, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec(), TTL: cfg})
	m, _ := api.GetMapState(h, api.MapStateDescriptor[string, int64]{Name: "m", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec()})
	l, _ := api.GetListState(h, api.ListStateDescriptor[string]{Name: "l", Codec: api.StringCodec()})
	const n = 300
	for i := 0; i < n; i++ {
		k := []byte(fmt.Sprint("k", i))
		h.SetCurrentKey(k, keygroup.Assign(k, h.MaxParallelism()))
		m.SetNamespace([]byte("w"))
		if err := firstErr(v.Update(int64(i)), m.Put("a", int64(i)), l.Add("x"), l.Add("y"), h.RegisterEventTimeTimer(int64(i), []byte("w"))); err != nil {
			t.Fatal(err)
		}
	}
	p, err := pebble.Open(t.TempDir(), pebble.Options{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	copyAll(t, h, p)
	h2, _ := heap.New(opts)
	copyAll(t, p, h2)

	v2, _ := api.GetValueState(h2, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec(), TTL: cfg})
	m2, _ := api.GetMapState(h2, api.MapStateDescriptor[string, int64]{Name: "m", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec()})
	l2, _ := api.GetListState(h2, api.ListStateDescriptor[string]{Name: "l", Codec: api.StringCodec()})
	for i := 0; i < n; i++ {
		k := []byte(fmt.Sprint("k", i))
		h2.SetCurrentKey(k, keygroup.Assign(k, h2.MaxParallelism()))
		m2.SetNamespace([]byte("w"))
		if got, err := v2.Value(); err != nil || got != int64(i) {
			t.Fatalf("%s value %d %v", k, got, err)
		}
		if got, ok, err := m2.Get("a"); err != nil || !ok || got != int64(i) {
			t.Fatalf("%s map %d %v %v", k, got, ok, err)
		}
		if got, err := l2.Get(); err != nil || !slices.Equal(got, []string{"x", "y"}) {
			t.Fatalf("%s list %q %v", k, got, err)
		}
	}
	fired := 0
	if err := h2.AdvanceWatermark(math.MaxInt64, func(tm api.Timer) error {
		if string(tm.Namespace) != "w" {
			return fmt.Errorf("timer namespace %q", tm.Namespace)
		}
		fired++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fired != n {
		t.Fatalf("%d timers fired", fired)
	}
	// The TTL timestamp moved with the value: it expires on schedule.
	clk.Set(2000)
	h2.SetCurrentKey([]byte("k0"), keygroup.Assign([]byte("k0"), h2.MaxParallelism()))
	if _, ok, _ := v2.Lookup(); ok {
		t.Fatal("TTL timestamp lost in the move")
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func copyAll(t *testing.T, from, to statebackend.Backend) {
	t.Helper()
	if err := to.RestoreStates(from.States()); err != nil {
		t.Fatal(err)
	}
	if err := from.Iterate(from.KeyGroups(), to.Ingest); err != nil {
		t.Fatal(err)
	}
}
