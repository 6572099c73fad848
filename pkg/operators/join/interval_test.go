package join_test

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/operators/join"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

// opCtx is the context of an operator driven by a test on a real backend.
type opCtx struct{ eng *statebackend.Engine }

func (c *opCtx) Info() api.TaskInfo {
	return api.TaskInfo{JobID: "j", OperatorID: "j", OperatorUID: "j", Parallelism: 1, MaxParallelism: keygroup.DefaultMaxParallelism}
}
func (c *opCtx) Logger() *slog.Logger                 { return slog.Default() }
func (c *opCtx) Metrics() prometheus.Registerer       { return prometheus.NewRegistry() }
func (c *opCtx) Clock() api.Clock                     { return nil }
func (c *opCtx) Done() <-chan struct{}                { return nil }
func (c *opCtx) DataDir() string                      { return "" }
func (c *opCtx) KeyedStateStore() api.KeyedStateStore { return c.eng }
func (c *opCtx) TimerService() api.TimerService       { return c.eng }

// driver runs an interval join on an engine the way a task does: key set
// before each record, timers fired on watermarks.
type driver struct {
	t   *testing.T
	eng *statebackend.Engine
	op  *join.Interval
	out []string
}

func (d *driver) Collect(r api.Record) {
	d.out = append(d.out, fmt.Sprintf("%s@%d", r.Value, r.Timestamp))
}

func newDriver(t *testing.T, eng *statebackend.Engine, cfg string) *driver {
	t.Helper()
	typ := join.IntervalType()
	inst, err := typ.Instantiate([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{t: t, eng: eng, op: inst.(*join.Interval)}
	if err := d.op.Open(&opCtx{eng: eng}); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *driver) record(left bool, key string, ts int64, v string) {
	d.t.Helper()
	d.eng.SetCurrentKey([]byte(key), keygroup.Assign([]byte(key), keygroup.DefaultMaxParallelism))
	r := api.Record{Key: []byte(key), Value: []byte(v), Timestamp: ts}
	var err error
	if left {
		err = d.op.ProcessRecord(r, d)
	} else {
		err = d.op.ProcessRecord2(r, d)
	}
	if err != nil {
		d.t.Fatal(err)
	}
}

func (d *driver) watermark(ts int64) {
	d.t.Helper()
	if err := d.eng.AdvanceWatermark(ts, func(tm api.Timer) error { return d.op.OnTimer(tm, d) }); err != nil {
		d.t.Fatal(err)
	}
}

// entries counts the engine's items per state (timers included).
func entries(t *testing.T, eng *statebackend.Engine) map[string]int {
	t.Helper()
	n := map[string]int{}
	if err := eng.Iterate(eng.KeyGroups(), func(e statebackend.Entry) error {
		if e.State == "rows" || e.State == "rows3" {
			b := e.Value
			for len(b) > 0 { // count list elements
				l, w := binary.Uvarint(b)
				b = b[w+int(l):]
				n[e.State]++
			}
			return nil
		}
		n[e.State]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func backends(t *testing.T) map[string]func() *statebackend.Engine {
	return map[string]func() *statebackend.Engine{
		"heap": func() *statebackend.Engine {
			e, err := heap.New(statebackend.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			return e
		},
		"pebble": func() *statebackend.Engine {
			e, err := pebble.Open(t.TempDir(), pebble.Options{CacheSize: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			return e
		},
	}
}

type row struct {
	left bool
	key  string
	ts   int64
	v    string
}

// TestIntervalJoinRandomOrder: records out of order (within a bound the
// watermark allows), late ones dropped; the output equals the brute-force
// join of the records that were not late, and once the watermark passes
// everything the state is empty, on both backends and several buckets.
func TestIntervalJoinRandomOrder(t *testing.T) {
	for name, open := range backends(t) {
		for _, cfg := range []string{`{"lower":"-7ms","upper":"3ms"}`, `{"lower":"2ms","upper":"9ms","cleanupDelay":"5ms"}`, `{"lower":"-20ms","upper":"-4ms","cleanupDelay":"1ms"}`} {
			t.Run(name+cfg, func(t *testing.T) {
				var lower, upper int64
				switch cfg[10:12] {
				case "-7":
					lower, upper = -7, 3
				case "2m":
					lower, upper = 2, 9
				default:
					lower, upper = -20, -4
				}
				d := newDriver(t, open(), cfg)
				rng := rand.New(rand.NewPCG(1, 2))
				var kept []row
				wm := int64(math.MinInt64)
				for i := range 6000 {
					r := row{left: rng.IntN(2) == 0, key: fmt.Sprintf("k%d", rng.IntN(7)), ts: int64(i/3) - rng.Int64N(25)}
					r.v = fmt.Sprintf("%v%d", r.left, i)
					if wm == math.MinInt64 || r.ts >= wm {
						kept = append(kept, r)
					}
					d.record(r.left, r.key, r.ts, r.v)
					if i%50 == 49 {
						wm = int64(i/3) - 20 // some records come after it
						d.watermark(wm)
					}
				}
				var want []string
				for _, a := range kept {
					for _, b := range kept {
						if a.left && !b.left && a.key == b.key && b.ts+lower <= a.ts && a.ts <= b.ts+upper {
							want = append(want, fmt.Sprintf(`{"left":%s,"right":%s}@%d`, a.v, b.v, max(a.ts, b.ts)))
						}
					}
				}
				got := slices.Clone(d.out)
				slices.Sort(got)
				slices.Sort(want)
				if len(want) < 100 {
					t.Fatalf("the brute-force join has %d rows: the test joins too little", len(want))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("the join emitted %d rows, the brute force %d", len(got), len(want))
				}
				d.watermark(math.MaxInt64 - 1)
				if n := entries(t, d.eng); len(n) != 0 {
					t.Fatalf("after the last watermark the state holds %v, want nothing", n)
				}
			})
		}
	}
}

// TestIntervalJoinStateBounded: a busy key's rows stay within about twice
// those the watermark still allows to match, and a key that goes quiet is
// emptied by its cleanup timer at most cleanupDelay after the watermark
// passes its rows.
func TestIntervalJoinStateBounded(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			d := newDriver(t, open(), `{"lower":"-5ms","upper":"5ms","cleanupDelay":"100ms"}`)
			d.record(true, "quiet", 0, "q0")
			d.record(false, "quiet", 3, "q1")
			for ts := int64(0); ts < 5000; ts++ {
				d.record(ts%2 == 0, "busy", ts, "b")
				if ts%10 == 9 {
					d.watermark(ts)
				}
				// Live rows: those of the last ~15ms (10 of the interval, up
				// to 10 of watermark lag): at most twice that plus pruneMin.
				if n := entries(t, d.eng)["rows3"]; ts > 200 && n > 2*30+8+2 {
					t.Fatalf("at %d the state holds %d rows", ts, n)
				}
			}
			// The quiet key's rows were useless from watermark 9: its timer
			// (on the 100ms grid) dropped them long ago.
			n := 0
			d.watermark(5000)
			if err := d.eng.Iterate(d.eng.KeyGroups(), func(e statebackend.Entry) error {
				if string(e.Key) == "quiet" {
					n++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Fatalf("the quiet key still has %d state entries or timers", n)
			}
		})
	}
}

// v1Key encodes a layout-1 map key (int64-ordered timestamp).
func v1Key(ts int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(ts)^(1<<63))
}

func v1Rows(rows ...string) []byte {
	var b []byte
	for _, r := range rows {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	return b
}

// restored is eng after restoring a snapshot of the given states and
// canonical entries, as a savepoint restore does.
func restored(t *testing.T, eng *statebackend.Engine, specs []api.StateSpec, snap []statebackend.Entry) *statebackend.Engine {
	t.Helper()
	if err := eng.RestoreStates(specs); err != nil {
		t.Fatal(err)
	}
	for _, e := range snap {
		if err := eng.Ingest(e); err != nil {
			t.Fatal(err)
		}
	}
	return eng
}

// TestIntervalJoinRestoresLayout1: state written in layout 1 (map states
// left and right, timestamp -> rows, one timer per row) restores into the
// current operator: its rows still join with new records, and its timers
// still drop them, on both backends.
func TestIntervalJoinRestoresLayout1(t *testing.T) {
	const lower, upper = -5, 10
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			// A snapshot of layout 1, in canonical entries, as a savepoint
			// holds it: key k, left rows at 100 (two) and a right row at 120.
			key := []byte("k")
			kg := keygroup.Assign(key, keygroup.DefaultMaxParallelism)
			specs := []api.StateSpec{
				{Name: "left", Kind: api.StateMap, KeyCodec: "int64-ordered", ValueCodec: "join-rows"},
				{Name: "right", Kind: api.StateMap, KeyCodec: "int64-ordered", ValueCodec: "join-rows"},
			}
			timer := func(ts int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(ts)) }
			snap := []statebackend.Entry{
				{State: "left", KeyGroup: kg, Key: key, UserKey: v1Key(100), Value: v1Rows(`"L100a"`, `"L100b"`)},
				{State: "right", KeyGroup: kg, Key: key, UserKey: v1Key(120), Value: v1Rows(`"R120"`)},
				{State: statebackend.EventTimersState, KeyGroup: kg, Key: key, Namespace: []byte("l"), UserKey: timer(100 - lower + 1)},
				{State: statebackend.EventTimersState, KeyGroup: kg, Key: key, Namespace: []byte("r"), UserKey: timer(120 + upper + 1)},
			}
			eng := restored(t, open(), specs, snap)
			d := newDriver(t, eng, fmt.Sprintf(`{"lower":"%dms","upper":"%dms"}`, lower, upper))
			d.watermark(98)
			d.record(false, "k", 103, `"R103"`) // joins both old left rows: 103-5 <= 100 <= 103+10
			d.record(true, "k", 113, `"L113"`)  // joins R103 (98 <= 113 <= 113)
			d.record(true, "k", 118, `"L118"`)  // joins the old right row (115 <= 118 <= 130)
			got := slices.Clone(d.out)
			slices.Sort(got)
			want := []string{`{"left":"L100a","right":"R103"}@103`, `{"left":"L100b","right":"R103"}@103`,
				`{"left":"L113","right":"R103"}@113`, `{"left":"L118","right":"R120"}@120`}
			if !slices.Equal(got, want) {
				t.Fatalf("joined %q, want %q", got, want)
			}
			// The old timers drop the old rows.
			d.watermark(106)
			if n := entries(t, eng); n["left"] != 0 || n["right"] != 1 {
				t.Fatalf("at watermark 106 the layout-1 state holds %v, want the right row only", n)
			}
			d.watermark(math.MaxInt64 - 1)
			if n := entries(t, eng); len(n) != 0 {
				t.Fatalf("after the last watermark the state holds %v, want nothing", n)
			}
		})
	}
}

// TestIntervalJoinRestoresLayout2: state written in layout 2 (one list
// "rows" per key holding both sides, one cleanup timer per key) restores
// into the current operator: its rows still join with new records of
// either side, new rows go to layout 3, and the old cleanup timer drains
// the old list, on both backends.
func TestIntervalJoinRestoresLayout2(t *testing.T) {
	const lower, upper = -5, 10
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			key := []byte("k")
			kg := keygroup.Assign(key, keygroup.DefaultMaxParallelism)
			specs := []api.StateSpec{{Name: "rows", Kind: api.StateList, ValueCodec: "join-rows-v2"}}
			timer := func(ts int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(ts)) }
			elem := func(side byte, ts int64, v string) string { // side | ts (8, big-endian) | record
				return string(append(binary.BigEndian.AppendUint64([]byte{side}, uint64(ts)), v...))
			}
			snap := []statebackend.Entry{
				{State: "rows", KeyGroup: kg, Key: key, Value: v1Rows(elem(0, 100, `"L100"`), elem(1, 120, `"R120"`))},
				{State: statebackend.EventTimersState, KeyGroup: kg, Key: key, Namespace: []byte("c"), UserKey: timer(1000)},
			}
			eng := restored(t, open(), specs, snap)
			d := newDriver(t, eng, fmt.Sprintf(`{"lower":"%dms","upper":"%dms"}`, lower, upper))
			d.watermark(98)
			d.record(false, "k", 103, `"R103"`) // joins the old left row: 98 <= 100 <= 113
			d.record(true, "k", 118, `"L118"`)  // joins the old R120, not the new R103: 115 <= 118 <= 130
			got := slices.Clone(d.out)
			slices.Sort(got)
			want := []string{`{"left":"L100","right":"R103"}@103`, `{"left":"L118","right":"R120"}@120`}
			if !slices.Equal(got, want) {
				t.Fatalf("joined %q, want %q", got, want)
			}
			if n := entries(t, eng); n["rows"] != 2 || n["rows3"] != 2 {
				t.Fatalf("after the records the state holds %v, want the 2 old rows in layout 2 and the 2 new in layout 3", n)
			}
			d.watermark(math.MaxInt64 - 1)
			if n := entries(t, eng); len(n) != 0 {
				t.Fatalf("after the last watermark the state holds %v, want nothing", n)
			}
		})
	}
}
