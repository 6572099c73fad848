package snapshot_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// RestoreBackend opens the kind a factory names from native and canonical
// handles: a native handle of the factory's own format for exactly its key
// groups is reopened in place (and reported, for KeyedOptions.Restored);
// everything else is ingested. The state is the same either way.
func TestRestoreBackendByName(t *testing.T) {
	half := keygroup.Range{Start: 0, End: maxPar/2 - 1}
	for _, from := range []kind{heapKind, pebbleKind} {
		src := newBackend(t, from, all)
		fill(t, src, declare(t, src, false), 0, 300)
		want := dump(t, src)
		s := newStorage(t)
		_, res := snap(t, src, s, 1, snapshot.Checkpoint, "op-0")
		format := res.Handle.GetFormat()
		for _, name := range statebackend.Names() {
			f, err := statebackend.Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []keygroup.Range{all, half} {
				cfg := statebackend.Config{Options: opts(r)}
				if f.OnDisk() {
					cfg.Dir = filepath.Join(t.TempDir(), "db")
				}
				b, native, err := snapshot.RestoreBackend(ctx, f, cfg, s, []*checkpointv1.KeyedStateHandle{res.Handle}, t.TempDir())
				if err != nil {
					t.Fatalf("%s handle into %s %v: %v", format, name, r, err)
				}
				t.Cleanup(func() { _ = b.Close() })
				inPlace := format == name && r == all
				if (native != nil) != inPlace {
					t.Fatalf("%s handle into %s %v: reopened natively %v, want %v", format, name, r, native != nil, inPlace)
				}
				if r == all {
					equalDumps(t, dump(t, b), want)
				} else if len(dump(t, b)) == 0 {
					t.Fatalf("%s handle into %s %v: nothing restored", format, name, r)
				}
			}
		}
	}
}

// A keyed handle in a format that is neither canonical nor the native
// format of a registered backend fails the restore with one line.
func TestRestoreUnknownFormat(t *testing.T) {
	b := newHeap(t, all)
	h := &checkpointv1.KeyedStateHandle{KeyGroupEnd: maxPar - 1, Format: "rocks",
		Files: []*checkpointv1.FileHandle{{Path: "x", LocalName: "000001.sst"}}}
	err := snapshot.Restore(ctx, b, []*checkpointv1.KeyedStateHandle{h}, newStorage(t), all, t.TempDir())
	if !errors.Is(err, snapshot.ErrMismatch) || !errors.Is(err, statebackend.ErrUnknownBackend) ||
		!strings.Contains(err.Error(), `"rocks"`) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("restore of a %q handle: %v, want one line wrapping ErrMismatch and ErrUnknownBackend", h.GetFormat(), err)
	}
}
