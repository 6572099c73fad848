package snapshot_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// A native Pebble checkpoint with one flipped byte in an SST, or in the
// last record of its MANIFEST (which Pebble would skip silently, opening
// an empty DB), fails its restore (in place, and by ingest when
// rescaling) with one line naming the file in checkpoint storage and
// wrapping pebble.ErrCorrupt, before the DB is opened.
func TestCorruptNativeRestore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		file   func(local string) bool
		offset func(size int) int
		want   string
	}{
		{"sst", func(l string) bool { return strings.HasSuffix(l, ".sst") }, func(int) int { return 100 }, "checksum mismatch"},
		{"manifest", func(l string) bool { return strings.HasPrefix(l, "MANIFEST-") }, func(n int) int { return n - 10 }, "does not list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newPebble(t, all)
			fill(t, b, declare(t, b, false), 0, 5000)
			st := newStorage(t)
			_, res := snap(t, b, st, 1, snapshot.Checkpoint, "op-0")
			var path string
			for _, f := range res.Handle.Files {
				if tc.file(f.GetLocalName()) {
					path = f.Path
					break
				}
			}
			if path == "" {
				t.Fatalf("no such file in the native handle: %v", res.Handle.Files)
			}
			data, err := st.ReadFile(ctx, path)
			must(t, err)
			data[tc.offset(len(data))] ^= 0xFF
			must(t, st.WriteFile(ctx, path, data))

			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, pebble.ErrCorrupt) || !errors.Is(err, statebackend.ErrCorrupt) {
					t.Fatalf("%s: %v does not wrap pebble.ErrCorrupt", what, err)
				}
				if msg := err.Error(); !strings.Contains(msg, "state file "+path+" is corrupt") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
					t.Fatalf("%s: error does not name %s on one line: %q", what, path, msg)
				}
			}
			handles := []*checkpointv1.KeyedStateHandle{res.Handle}
			_, err = snapshot.RestorePebble(ctx, st, handles, filepath.Join(t.TempDir(), "db"), pebbleOpts(all), t.TempDir())
			check("restore in place", err)
			half := keygroup.Range{Start: 0, End: maxPar/2 - 1}
			err = snapshot.Restore(ctx, newHeap(t, half), handles, st, half, t.TempDir())
			check("restore by ingest", err)
		})
	}
}
