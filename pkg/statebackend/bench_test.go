package statebackend_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	cpebble "github.com/cockroachdb/pebble/v2"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

// The benchmarks compare state access through the SDK with raw operations
// using the same key encoding (key group | state id | cell key) and the
// same value encoding, measured in the same run. See docs/performance.md.

const benchKeys = 1 << 16

type benchKey struct {
	key []byte
	kg  int
}

func benchKeySet() []benchKey {
	ks := make([]benchKey, benchKeys)
	for i := range ks {
		k := []byte(fmt.Sprintf("user-%08d", i))
		ks[i] = benchKey{k, keygroup.Assign(k, keygroup.DefaultMaxParallelism)}
	}
	return ks
}

// rawKey is the Pebble backend's key for (kg, state 0, key, empty namespace).
func rawKey(dst []byte, k benchKey) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(k.kg))
	dst = binary.BigEndian.AppendUint16(dst, 0)
	return statebackend.AppendCellKey(dst, k.key, nil)
}

func backends(b *testing.B) map[string]func(b *testing.B) statebackend.Backend {
	return map[string]func(b *testing.B) statebackend.Backend{
		"heap": func(b *testing.B) statebackend.Backend {
			e, err := heap.New(statebackend.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return e
		},
		"pebble": func(b *testing.B) statebackend.Backend {
			e, err := pebble.Open(b.TempDir(), pebble.Options{CacheSize: 64 << 20, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			return e
		},
	}
}

func forBackends(b *testing.B, fn func(b *testing.B, be statebackend.Backend)) {
	for _, name := range []string{"heap", "pebble"} {
		b.Run(name, func(b *testing.B) {
			be := backends(b)[name](b)
			defer be.Close()
			fn(b, be)
		})
	}
}

func BenchmarkValueUpdate(b *testing.B) {
	ks := benchKeySet()
	b.Run("rawmap", func(b *testing.B) {
		type entry struct{ v []byte }
		m := map[string]*entry{}
		var kb, vb []byte
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := ks[i%benchKeys]
			kb = rawKey(kb[:0], k)
			vb, _ = api.Int64Codec().Encode(vb[:0], int64(i))
			e := m[string(kb)]
			if e == nil {
				e = &entry{}
				m[string(kb)] = e
			}
			e.v = append(e.v[:0], vb...)
		}
	})
	b.Run("rawpebble", func(b *testing.B) {
		db := openRaw(b)
		defer db.Close()
		batch := db.NewBatch()
		var kb, vb []byte
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			kb = rawKey(kb[:0], ks[i%benchKeys])
			vb, _ = api.Int64Codec().Encode(vb[:0], int64(i))
			if err := batch.Set(kb, vb, nil); err != nil {
				b.Fatal(err)
			}
			if batch.Len() >= 1<<20 {
				if err := batch.Commit(cpebble.NoSync); err != nil {
					b.Fatal(err)
				}
				batch.Reset()
			}
		}
		if err := batch.Commit(cpebble.NoSync); err != nil {
			b.Fatal(err)
		}
	})
	forBackends(b, func(b *testing.B, be statebackend.Backend) {
		v, err := api.GetValueState(be, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := ks[i%benchKeys]
			be.SetCurrentKey(k.key, k.kg)
			if err := v.Update(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := be.Flush(); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkValueGet(b *testing.B) {
	ks := benchKeySet()
	b.Run("rawmap", func(b *testing.B) {
		m := map[string][]byte{}
		var kb []byte
		for i, k := range ks {
			vb, _ := api.Int64Codec().Encode(nil, int64(i))
			m[string(rawKey(kb[:0], k))] = vb
		}
		var sum int64
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			kb = rawKey(kb[:0], ks[i%benchKeys])
			v, _ := api.Int64Codec().Decode(m[string(kb)])
			sum += v
		}
	})
	b.Run("rawpebble", func(b *testing.B) {
		db := openRaw(b)
		defer db.Close()
		var kb []byte
		for i, k := range ks {
			vb, _ := api.Int64Codec().Encode(nil, int64(i))
			if err := db.Set(rawKey(kb[:0], k), vb, cpebble.NoSync); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			kb = rawKey(kb[:0], ks[i%benchKeys])
			v, closer, err := db.Get(kb)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := api.Int64Codec().Decode(v); err != nil {
				b.Fatal(err)
			}
			closer.Close()
		}
	})
	forBackends(b, func(b *testing.B, be statebackend.Backend) {
		v, err := api.GetValueState(be, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
		if err != nil {
			b.Fatal(err)
		}
		for i, k := range ks {
			be.SetCurrentKey(k.key, k.kg)
			if err := v.Update(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := be.Flush(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := ks[i%benchKeys]
			be.SetCurrentKey(k.key, k.kg)
			if got, err := v.Value(); err != nil || got != int64(i%benchKeys) {
				b.Fatalf("got %d, %v", got, err)
			}
		}
	})
}

func BenchmarkListAdd(b *testing.B) {
	ks := benchKeySet()
	forBackends(b, func(b *testing.B, be statebackend.Backend) {
		l, err := api.GetListState(be, api.ListStateDescriptor[int64]{Name: "l", Codec: api.Int64Codec()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := ks[i%1024]
			be.SetCurrentKey(k.key, k.kg)
			if err := l.Add(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := be.Flush(); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkListGet(b *testing.B) {
	ks := benchKeySet()
	forBackends(b, func(b *testing.B, be statebackend.Backend) {
		l, err := api.GetListState(be, api.ListStateDescriptor[int64]{Name: "l", Codec: api.Int64Codec()})
		if err != nil {
			b.Fatal(err)
		}
		// 1024 keys with 10-element lists.
		for i := 0; i < 10*1024; i++ {
			k := ks[i%1024]
			be.SetCurrentKey(k.key, k.kg)
			if err := l.Add(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := be.Flush(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := ks[i%1024]
			be.SetCurrentKey(k.key, k.kg)
			n := 0
			if err := l.Range(func(int64) bool { n++; return true }); err != nil || n != 10 {
				b.Fatalf("%d elements, %v", n, err)
			}
		}
	})
}

func mapState(b *testing.B, be statebackend.Backend) *api.MapState[int64, int64] {
	m, err := api.GetMapState(be, api.MapStateDescriptor[int64, int64]{Name: "m", KeyCodec: api.Int64Codec(), ValueCodec: api.Int64Codec()})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func fillMap(b *testing.B, be statebackend.Backend, m *api.MapState[int64, int64], ks []benchKey, keys, entries int) {
	for i := 0; i < keys; i++ {
		be.SetCurrentKey(ks[i].key, ks[i].kg)
		for j := 0; j < entries; j++ {
			if err := m.Put(int64(j), int64(i)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := be.Flush(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkMapPut(b *testing.B) {
	ks := benchKeySet()
	forBackends(b, func(b *testing.B, be statebackend.Backend) {
		m := mapState(b, be)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := ks[i%benchKeys]
			be.SetCurrentKey(k.key, k.kg)
			if err := m.Put(int64(i%16), int64(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := be.Flush(); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkMapGet(b *testing.B) {
	ks := benchKeySet()
	forBackends(b, func(b *testing.B, be statebackend.Backend) {
		m := mapState(b, be)
		fillMap(b, be, m, ks, 8192, 16)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := ks[i%8192]
			be.SetCurrentKey(k.key, k.kg)
			if _, ok, err := m.Get(int64(i % 16)); err != nil || !ok {
				b.Fatalf("%v %v", ok, err)
			}
		}
	})
}

func BenchmarkMapIterate(b *testing.B) {
	ks := benchKeySet()
	forBackends(b, func(b *testing.B, be statebackend.Backend) {
		m := mapState(b, be)
		fillMap(b, be, m, ks, 1024, 16)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			k := ks[i%1024]
			be.SetCurrentKey(k.key, k.kg)
			n := 0
			if err := m.Range(func(int64, int64) bool { n++; return true }); err != nil || n != 16 {
				b.Fatalf("%d entries, %v", n, err)
			}
		}
	})
}
