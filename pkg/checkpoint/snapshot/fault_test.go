package snapshot_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/internal/blobfault"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// State files read back with flipped bytes (internal/blobfault): the
// checksums of the formats must catch every flip, name the file, and a
// restore must never succeed with state other than what was snapshotted.

// faultyStorage opens checkpoint storage on a fresh fault-injecting store;
// keys of the store are "ck/" + the storage's relative paths.
func faultyStorage(t *testing.T) (*blobfault.Store, *storage.Storage) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	fs, err := blobfault.NewMem(fmt.Sprintf("snapshot-%x", b))
	must(t, err)
	t.Cleanup(func() { _ = fs.Close() })
	s, err := storage.Open(ctx, fs.URL("ck"))
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return fs, s
}

// flips are the offsets a test flips in each file: the first byte (magic),
// the middle, and the last (a checksum, for Flow's own formats).
func flips(size int64) []int64 { return []int64{0, size / 2, -1} }

// A canonical keyed-state file and the operator state files of a subtask
// snapshot, each read with a flipped byte: ErrCorrupt naming the file. The
// fault is transient: the next restore reads the file whole.
func TestFaultFlippedCanonicalAndOperatorState(t *testing.T) {
	fs, st := faultyStorage(t)
	b := newHeap(t, all)
	fill(t, b, declare(t, b, false), 0, 500)
	want := dump(t, b)
	k, err := snapshot.NewKeyed(b, snapshot.KeyedOptions{WorkDir: t.TempDir()})
	must(t, err)
	ops := statebackend.NewOperatorStore()
	l, err := ops.OperatorList(api.OperatorStateSpec{Name: "offsets", Mode: api.SplitList, ValueCodec: "int64"})
	must(t, err)
	l.Append([]byte("12345678"))
	m, err := ops.BroadcastMap(api.OperatorStateSpec{Name: "rules", Mode: api.Broadcast, KeyCodec: "string", ValueCodec: "string"})
	must(t, err)
	m.Put([]byte("a"), []byte("1"))
	p, err := snapshot.Sync(1, snapshot.Checkpoint, snapshot.Operator{Subtask: 0, Keyed: k, OperatorState: ops})
	must(t, err)
	ss, err := p.Async(ctx, snapshot.Target{Store: st, Dir: "job/chk-1", Name: "op-0"})
	must(t, err)
	if len(ss.Keyed) != 1 || ss.Keyed[0].Format != snapshot.FormatCanonical || len(ss.OperatorState) != 2 {
		t.Fatalf("subtask state %+v", ss)
	}

	keyed := ss.Keyed[0].Files[0]
	for _, at := range flips(keyed.Size) {
		fs.Inject(blobfault.Rule{Op: blobfault.OpRead, Key: "ck/" + keyed.Path, Fault: blobfault.Flip(at), Times: 1})
		err := snapshot.Restore(ctx, newHeap(t, all), ss.Keyed, st, all, t.TempDir())
		if !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), keyed.Path) {
			t.Errorf("keyed state read with byte %d flipped: %v, want ErrCorrupt naming %s", at, err, keyed.Path)
		}
		got := newHeap(t, all)
		must(t, snapshot.Restore(ctx, got, ss.Keyed, st, all, t.TempDir()))
		equalDumps(t, dump(t, got), want)
	}

	for _, h := range ss.OperatorState {
		for _, at := range flips(h.File.Size) {
			fs.Inject(blobfault.Rule{Op: blobfault.OpRead, Key: "ck/" + h.File.Path, Fault: blobfault.Flip(at), Times: 1})
			_, err := snapshot.ReadOperatorState(ctx, st.Open, ss.OperatorState)
			if !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), h.File.Path) {
				t.Errorf("operator state %q read with byte %d flipped: %v, want ErrCorrupt naming %s", h.Name, at, err, h.File.Path)
			}
			if _, err := snapshot.ReadOperatorState(ctx, st.Open, ss.OperatorState); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Every file of a native Pebble checkpoint (SSTs, MANIFEST, OPTIONS),
// downloaded with a flipped byte: the restore fails with a corrupt-state
// error naming the file, or restores exactly the snapshotted state (a flip
// Pebble ignores, such as in a trailing newline of OPTIONS). It must never
// open with other state, and a failed restore must leave no goroutine.
func TestFaultFlippedNativePebbleFile(t *testing.T) {
	fs, st := faultyStorage(t)
	b := newPebble(t, all)
	fill(t, b, declare(t, b, false), 0, 1000)
	want := dump(t, b)
	_, res := snap(t, b, st, 1, snapshot.Checkpoint, "op-0")
	if res.Handle.Format != snapshot.FormatPebble {
		t.Fatalf("format %q", res.Handle.Format)
	}
	handles := []*checkpointv1.KeyedStateHandle{res.Handle}
	for _, f := range res.Handle.Files {
		if f.Size == 0 {
			continue // marker files: no bytes to flip
		}
		for _, at := range flips(f.Size) {
			t.Run(fmt.Sprintf("%s@%d", f.LocalName, at), func(t *testing.T) {
				leaks := goleak.IgnoreCurrent()
				fs.Clear()
				fs.Inject(blobfault.Rule{Op: blobfault.OpRead, Key: "ck/" + f.Path, Fault: blobfault.Flip(at)})
				e, err := snapshot.RestorePebble(ctx, st, handles, filepath.Join(t.TempDir(), "db"), pebbleOpts(all), t.TempDir())
				fs.Clear()
				if err != nil {
					if !errors.Is(err, pebble.ErrCorrupt) && !errors.Is(err, snapshot.ErrCorrupt) {
						t.Errorf("restore failed, but not as corrupt state: %v", err)
					}
					if !strings.Contains(err.Error(), f.Path) && !strings.Contains(err.Error(), f.LocalName) {
						t.Errorf("the error does not name %s: %v", f.Path, err)
					}
					if lerr := goleak.Find(leaks); lerr != nil {
						t.Errorf("a restore that failed to open the DB left goroutines behind (pebble.Open does not close Pebble's disk-health-checking FS on error): %v", lerr)
					}
					return
				}
				got := dump(t, e)
				_ = e.Close()
				if len(got) != len(want) {
					t.Fatalf("restore succeeded with %d entries, the snapshot holds %d: a corrupt %s went undetected", len(got), len(want), f.LocalName)
				}
				equalDumps(t, got, want)
			})
		}
	}
}
