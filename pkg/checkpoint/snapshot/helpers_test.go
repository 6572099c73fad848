package snapshot_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	"github.com/flowrt/flow/pkg/statebackend/statebackendtest"
)

// Pebble starts background goroutines; they must all stop on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const maxPar = 128

var clk = statebackendtest.NewFakeClock(1_000_000)

func opts(r keygroup.Range) statebackend.Options {
	return statebackend.Options{KeyGroups: r, MaxParallelism: maxPar, Clock: clk}
}

var all = keygroup.Range{Start: 0, End: maxPar - 1}

func newHeap(t testing.TB, r keygroup.Range) *statebackend.Engine {
	t.Helper()
	b, err := heap.New(opts(r))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func pebbleOpts(r keygroup.Range) pebble.Options {
	return pebble.Options{Options: opts(r), CacheSize: 4 << 20, MemTableSize: 4 << 20}
}

func newPebble(t testing.TB, r keygroup.Range) *statebackend.Engine {
	t.Helper()
	b, err := pebble.Open(filepath.Join(t.TempDir(), "db"), pebbleOpts(r))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func newStorage(t testing.TB) *storage.Storage {
	t.Helper()
	s, err := storage.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type states struct {
	v  *api.ValueState[int64]
	l  *api.ListState[string]
	m  *api.MapState[string, int64]
	tt *api.ValueState[string]
}

// declare declares the test states in an order that depends on rev, so
// files must not depend on declaration order.
func declare(t testing.TB, b statebackend.Backend, rev bool) *states {
	t.Helper()
	s := &states{}
	steps := []func() error{
		func() (err error) {
			s.v, err = api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
			return
		},
		func() (err error) {
			s.l, err = api.GetListState(b, api.ListStateDescriptor[string]{Name: "l", Codec: api.StringCodec()})
			return
		},
		func() (err error) {
			s.m, err = api.GetMapState(b, api.MapStateDescriptor[string, int64]{Name: "m", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec()})
			return
		},
		func() (err error) {
			s.tt, err = api.GetValueState(b, api.ValueStateDescriptor[string]{Name: "ttl", Codec: api.StringCodec(),
				TTL: &api.TTLConfig{TTL: time.Hour}})
			return
		},
	}
	if rev {
		slices.Reverse(steps)
	}
	for _, f := range steps {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func setKey(b statebackend.Backend, key string) bool {
	kg := keygroup.Assign([]byte(key), maxPar)
	if !b.KeyGroups().Contains(kg) {
		return false
	}
	b.SetCurrentKey([]byte(key), kg)
	return true
}

func must(t testing.TB, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// fill writes keys k<from>..k<to-1> that fall in b's key groups: every
// state kind, a namespace, TTL and both kinds of timers.
func fill(t testing.TB, b statebackend.Backend, s *states, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		k := fmt.Sprint("k", i)
		if !setKey(b, k) {
			continue
		}
		s.m.SetNamespace([]byte("w1"))
		must(t, s.v.Update(int64(i)), s.l.Add("a"), s.l.Add(k), s.m.Put("x", int64(i)), s.m.Put("y", -int64(i)),
			s.tt.Update(k), b.RegisterEventTimeTimer(int64(i), []byte("w1")))
		if i%3 == 0 {
			must(t, b.RegisterProcessingTimeTimer(int64(10*i), nil))
		}
	}
	must(t, b.Flush())
}

// dump is the backend's canonical content: "state|kg|key|ns|uk" -> value.
func dump(t testing.TB, b statebackend.Backend) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := b.Iterate(b.KeyGroups(), func(e statebackend.Entry) error {
		k := fmt.Sprintf("%q|%d|%q|%q|%x", e.State, e.KeyGroup, e.Key, e.Namespace, e.UserKey)
		if _, dup := out[k]; dup {
			return fmt.Errorf("duplicate entry %s", k)
		}
		out[k] = hex.EncodeToString(e.Value)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalDumps(t testing.TB, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("restored %d entries, want %d", len(got), len(want))
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Fatalf("entry %s: got %q want %q", k, got[k], want[k])
		}
	}
}

// noSeek hides the Seek method of a storage reader so RestoreKeyed must
// skip sections by reading them.
type noSeek struct{ io.ReadCloser }

func noSeekOpen(s *storage.Storage) snapshot.OpenFunc {
	return func(ctx context.Context, p string) (io.ReadCloser, error) {
		rc, err := s.Open(ctx, p)
		if err != nil {
			return nil, err
		}
		return noSeek{rc}, nil
	}
}

func newHeapPlain(r keygroup.Range) (*statebackend.Engine, error) { return heap.New(opts(r)) }
