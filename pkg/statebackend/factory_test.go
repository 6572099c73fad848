package statebackend_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

// Heap and Pebble register themselves; unknown names are one line that
// lists the known ones.
func TestRegistry(t *testing.T) {
	if got := strings.Join(statebackend.Names(), ","); got != "heap,pebble" {
		t.Fatalf("Names() = %s, want heap,pebble", got)
	}
	for _, tc := range []struct {
		name   string
		onDisk bool
	}{{heap.Name, false}, {pebble.Name, true}} {
		f, err := statebackend.Lookup(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if f.Name() != tc.name || f.OnDisk() != tc.onDisk {
			t.Fatalf("Lookup(%q) = %s (on disk %v)", tc.name, f.Name(), f.OnDisk())
		}
	}
	_, err := statebackend.Lookup("rocks")
	if !errors.Is(err, statebackend.ErrUnknownBackend) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), `"rocks"`) || !strings.Contains(err.Error(), "use heap or pebble") {
		t.Fatalf("Lookup(rocks): %v, want one line naming it and listing heap and pebble, wrapping ErrUnknownBackend", err)
	}
	if nf, err := statebackend.LookupNative(pebble.Name); err != nil || nf.Name() != pebble.Name {
		t.Fatalf("LookupNative(pebble) = %v, %v", nf, err)
	}
	for _, format := range []string{heap.Name, "canonical", "rocks"} {
		_, err := statebackend.LookupNative(format)
		if !errors.Is(err, statebackend.ErrUnknownBackend) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "native formats: pebble") {
			t.Fatalf("LookupNative(%q): %v, want one line listing the native format pebble", format, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a second Register of heap did not panic")
		}
	}()
	statebackend.Register(heap.Factory{})
}

func putValues(t *testing.T, b statebackend.Backend, n int) {
	t.Helper()
	v, err := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		k := []byte{byte(i)}
		b.SetCurrentKey(k, keygroup.Assign(k, b.MaxParallelism()))
		if err := v.Update(int64(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func countEntries(t *testing.T, b statebackend.Backend) int {
	t.Helper()
	n := 0
	if err := b.Iterate(b.KeyGroups(), func(statebackend.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// Backends opened by name hold state; a Pebble backend's store checkpoints
// natively and the factory found by the checkpoint's format verifies it
// and reads it back, with no type check of the backend.
func TestFactoryOpenAndNativeCheckpoint(t *testing.T) {
	cache := pebble.NewCache(8 << 20)
	defer cache.Unref()
	cfg := statebackend.Config{Options: statebackend.Options{MaxParallelism: 16}, SharedCache: cache}
	for _, name := range statebackend.Names() {
		t.Run(name, func(t *testing.T) {
			f, err := statebackend.Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			c := cfg
			if f.OnDisk() {
				c.Dir = filepath.Join(t.TempDir(), "db")
			}
			b, err := f.Open(c)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			putValues(t, b, 100)
			if n := countEntries(t, b); n != 100 {
				t.Fatalf("%d entries, want 100", n)
			}
			ns, native := b.(*statebackend.Engine).Store().(statebackend.NativeStore)
			if _, nf := f.(statebackend.NativeFactory); native != nf {
				t.Fatalf("store is a NativeStore: %v, factory a NativeFactory: %v", native, nf)
			}
			if !native {
				return
			}
			dir := filepath.Join(t.TempDir(), "chk")
			if err := ns.Checkpoint(dir); err != nil {
				t.Fatal(err)
			}
			nf, err := statebackend.LookupNative(ns.NativeFormat())
			if err != nil {
				t.Fatal(err)
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				fi, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				if err := nf.VerifyFile(filepath.Join(dir, e.Name()), e.Name(), fi.Size()); err != nil {
					t.Fatal(err)
				}
			}
			if err := nf.VerifyCheckpoint(dir, nil); err != nil {
				t.Fatal(err)
			}
			ro, err := nf.OpenReadOnly(dir, statebackend.Config{Options: statebackend.Options{KeyGroups: b.KeyGroups(), MaxParallelism: b.MaxParallelism()}, SharedCache: cache})
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			if n := countEntries(t, ro); n != 100 {
				t.Fatalf("native checkpoint read back: %d entries, want 100", n)
			}
		})
	}
}

func TestPebbleFactoryConfigErrors(t *testing.T) {
	f, err := statebackend.Lookup(pebble.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		cfg        statebackend.Config
	}{
		{"no dir", "empty directory", statebackend.Config{}},
		{"foreign cache", "SharedCache is a string", statebackend.Config{Dir: t.TempDir(), SharedCache: "cache"}},
		{"negative size", "must not be negative", statebackend.Config{Dir: t.TempDir(), MemtableSize: -1}},
		{"compression", `unknown compression "lz5"`, statebackend.Config{Dir: t.TempDir(), Compression: "lz5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := f.Open(tc.cfg)
			if err == nil {
				_ = b.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Open: %v, want one line containing %q", err, tc.want)
			}
			if b != nil {
				t.Fatalf("Open returned a backend (%T) with its error", b)
			}
		})
	}
}
