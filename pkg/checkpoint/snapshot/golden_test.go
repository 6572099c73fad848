package snapshot_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/statebackendtest"
)

var update = flag.Bool("update", false, "rewrite testdata/keyed-v1.kst (never for a released version)")

// goldenState builds a small deterministic state with max parallelism 8 in
// key groups [2, 5]: every state kind, TTL, namespaces and both timer kinds.
func goldenState(t *testing.T) statebackend.Backend {
	r := keygroup.Range{Start: 2, End: 5}
	b, err := heap.New(statebackend.Options{KeyGroups: r, MaxParallelism: 8, Clock: statebackendtest.NewFakeClock(1_700_000_000_000)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	v, _ := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	l, _ := api.GetListState(b, api.ListStateDescriptor[string]{Name: "l", Codec: api.StringCodec(), TTL: &api.TTLConfig{TTL: time.Minute}})
	m, _ := api.GetMapState(b, api.MapStateDescriptor[string, int64]{Name: "m", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec()})
	for i := 0; i < 12; i++ {
		key := []byte(fmt.Sprint("key", i))
		kg := keygroup.Assign(key, 8)
		if !r.Contains(kg) {
			continue
		}
		b.SetCurrentKey(key, kg)
		m.SetNamespace([]byte("w"))
		must(t, v.Update(int64(i)), l.Add("a"), l.Add("b"), m.Put("x", int64(i)), b.RegisterEventTimeTimer(int64(100+i), []byte("w")))
		if i%2 == 0 {
			must(t, b.RegisterProcessingTimeTimer(int64(200+i), nil))
		}
	}
	return b
}

// Version 1 of the canonical format is frozen: the fixture decodes, and
// the writer reproduces it byte for byte.
func TestGoldenV1(t *testing.T) {
	b := goldenState(t)
	var buf bytes.Buffer
	if _, _, err := snapshot.WriteKeyed(ctx, &buf, b, b.KeyGroups()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "keyed-v1.kst")
	if *update {
		must(t, os.MkdirAll("testdata", 0o755), os.WriteFile(path, buf.Bytes(), 0o644))
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var n, timers int
	hdr, err := snapshot.ReadKeyed(bytes.NewReader(golden), path, func(e statebackend.Entry) error {
		n++
		if e.State == statebackend.EventTimersState || e.State == statebackend.ProcessingTimersState {
			timers++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Version != 1 || hdr.MaxParallelism != 8 || hdr.KeyGroups != (keygroup.Range{Start: 2, End: 5}) || len(hdr.States) != 3 ||
		hdr.States[0].Name != "l" || hdr.States[0].TTL == nil || hdr.States[0].TTL.TTL != time.Minute {
		t.Fatalf("header %+v", hdr)
	}
	if n == 0 || timers == 0 {
		t.Fatalf("%d entries, %d timers", n, timers)
	}
	if !bytes.Equal(golden, buf.Bytes()) {
		t.Fatalf("the writer no longer reproduces %s (%d bytes, now %d): format version 1 is frozen", path, len(golden), buf.Len())
	}
}

// The example of docs/formats/state-snapshot.md.
func TestDocExample(t *testing.T) {
	b, err := heap.New(statebackend.Options{KeyGroups: keygroup.Range{Start: 2, End: 3}, MaxParallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, _ := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	var key []byte
	for i := 0; ; i++ {
		key = []byte{byte('a' + i)}
		if keygroup.Assign(key, 4) == 2 {
			break
		}
	}
	b.SetCurrentKey(key, 2)
	must(t, v.Update(1))
	var buf bytes.Buffer
	if _, _, err := snapshot.WriteKeyed(ctx, &buf, b, b.KeyGroups()); err != nil {
		t.Fatal(err)
	}
	want := "46 4c 4f 57 4b 53 54 31 00 00 00 01 00 00 00 0f 04 02 03 01 01 76 01 00 05 69 6e 74 36 34 00 6d 05 a6 89 " +
		"00 00 00 02 00 00 00 00 00 00 00 0e 02 01 61 00 00 08 80 00 00 00 00 00 00 01 dc f8 43 49 " +
		"00 00 00 03 00 00 00 00 00 00 00 00 32 cf b9 74"
	if got := fmt.Sprintf("% x", buf.Bytes()); string(key) != "a" || got != want {
		t.Fatalf("key %q, bytes\n%s\nwant (docs/formats/state-snapshot.md)\n%s", key, got, want)
	}
}
