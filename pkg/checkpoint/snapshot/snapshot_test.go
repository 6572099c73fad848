package snapshot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

var ctx = context.Background()

type kind string

const (
	heapKind   kind = "heap"
	pebbleKind kind = "pebble"
)

func newBackend(t testing.TB, k kind, r keygroup.Range) *statebackend.Engine {
	if k == heapKind {
		return newHeap(t, r)
	}
	return newPebble(t, r)
}

// snap takes a whole snapshot (Sync then Async) of b.
func snap(t testing.TB, b *statebackend.Engine, s *storage.Storage, id int64, mode snapshot.Mode, name string) (*snapshot.Keyed, *snapshot.KeyedResult) {
	t.Helper()
	k, err := snapshot.NewKeyed(b, snapshot.KeyedOptions{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return k, snapWith(t, k, s, id, mode, name)
}

func snapWith(t testing.TB, k *snapshot.Keyed, s *storage.Storage, id int64, mode snapshot.Mode, name string) *snapshot.KeyedResult {
	t.Helper()
	p, err := k.Sync(id, mode)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Async(ctx, snapshot.Target{Store: s, Dir: fmt.Sprintf("job/chk-%d", id), SharedDir: "job/shared", Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// restoreInto restores handles into a new backend of kind k over r.
func restoreInto(t testing.TB, k kind, s *storage.Storage, handles []*checkpointv1.KeyedStateHandle, r keygroup.Range) *statebackend.Engine {
	t.Helper()
	if k == pebbleKind {
		e, err := snapshot.RestorePebble(ctx, s, handles, filepath.Join(t.TempDir(), "db"), pebbleOpts(r), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		return e
	}
	e := newHeap(t, r)
	if err := snapshot.Restore(ctx, e, handles, s, r, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return e
}

// Every combination of source backend, mode and target backend restores
// exactly the state that was snapshotted.
func TestRoundTrip(t *testing.T) {
	for _, src := range []kind{heapKind, pebbleKind} {
		for _, mode := range []snapshot.Mode{snapshot.Checkpoint, snapshot.Full, snapshot.Savepoint} {
			for _, dst := range []kind{heapKind, pebbleKind} {
				t.Run(fmt.Sprintf("%s-%v-%s", src, mode, dst), func(t *testing.T) {
					b := newBackend(t, src, all)
					s := declare(t, b, false)
					fill(t, b, s, 0, 2000)
					want := dump(t, b)
					st := newStorage(t)
					_, res := snap(t, b, st, 1, mode, "op-0")
					wantFormat := snapshot.FormatCanonical
					if src == pebbleKind && mode == snapshot.Checkpoint {
						wantFormat = snapshot.FormatPebble
					}
					if res.Handle.Format != wantFormat {
						t.Fatalf("format %q, want %q", res.Handle.Format, wantFormat)
					}
					// Writes after Sync are not in the snapshot.
					setKey(b, "k1")
					must(t, s.v.Update(-1))
					got := restoreInto(t, dst, st, []*checkpointv1.KeyedStateHandle{res.Handle}, all)
					equalDumps(t, dump(t, got), want)
					// The restored backend is usable with the same declarations.
					s2 := declare(t, got, true)
					setKey(got, "k1")
					if v, err := s2.v.Value(); err != nil || v != 1 {
						t.Fatalf("k1 = %d, %v", v, err)
					}
				})
			}
		}
	}
}

// The canonical file is byte-identical for identical state on heap and
// Pebble, whatever the declaration order.
func TestCanonicalIdenticalAcrossBackends(t *testing.T) {
	st := newStorage(t)
	var files [][]byte
	for i, k := range []kind{heapKind, pebbleKind} {
		b := newBackend(t, k, all)
		s := declare(t, b, i == 1)
		fill(t, b, s, 0, 1500)
		_, res := snap(t, b, st, int64(i+1), snapshot.Full, "op")
		data, err := st.ReadFile(ctx, res.Handle.Files[0].Path)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(data)) != res.Handle.Files[0].Size || len(res.Handle.KeyGroupOffsets) != maxPar {
			t.Fatalf("size %d vs handle %d, %d offsets", len(data), res.Handle.Files[0].Size, len(res.Handle.KeyGroupOffsets))
		}
		files = append(files, data)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatalf("heap file (%d bytes) and pebble file (%d bytes) differ", len(files[0]), len(files[1]))
	}
	// WriteKeyed on a live backend writes the same bytes.
	b := newHeap(t, all)
	fill(t, b, declare(t, b, false), 0, 1500)
	var buf bytes.Buffer
	offs, n, err := snapshot.WriteKeyed(ctx, &buf, b, all)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || len(offs) != maxPar || !bytes.Equal(buf.Bytes(), files[0]) {
		t.Fatalf("WriteKeyed wrote %d bytes (reported %d), differing from the snapshot", buf.Len(), n)
	}
}

type subtaskSnap struct {
	r      keygroup.Range
	handle *checkpointv1.KeyedStateHandle
}

// rescale snapshots oldN subtasks (backends alternate heap/pebble, modes
// alternate native/canonical) and restores them into newN subtasks of
// kind dst; every entry must land exactly in the subtask owning its key
// group.
func rescale(t *testing.T, oldN, newN int, dst kind, seek bool) {
	st := newStorage(t)
	want := map[string]string{}
	var handles []*checkpointv1.KeyedStateHandle
	for i := 0; i < oldN; i++ {
		r := keygroup.RangeFor(maxPar, oldN, i)
		k := []kind{pebbleKind, heapKind}[i%2]
		b := newBackend(t, k, r)
		s := declare(t, b, i%2 == 1)
		fill(t, b, s, 0, 3000)
		for kk, v := range dump(t, b) {
			want[kk] = v
		}
		mode := snapshot.Checkpoint
		if i%3 == 2 {
			mode = snapshot.Savepoint
		}
		_, res := snap(t, b, st, 1, mode, fmt.Sprintf("op-%d", i))
		handles = append(handles, res.Handle)
	}
	got := map[string]string{}
	var old []*checkpointv1.SubtaskState
	for _, h := range handles {
		old = append(old, &checkpointv1.SubtaskState{Keyed: []*checkpointv1.KeyedStateHandle{h}})
	}
	for j := 0; j < newN; j++ {
		r := keygroup.RangeFor(maxPar, newN, j)
		handles := snapshot.KeyedHandlesFor(old, r)
		if want := keygroup.OperatorIndex(r.End, maxPar, oldN) - keygroup.OperatorIndex(r.Start, maxPar, oldN) + 1; len(handles) != want {
			t.Fatalf("new subtask %d %v overlaps %d old handles, want %d", j, r, len(handles), want)
		}
		var e *statebackend.Engine
		if dst == heapKind && !seek {
			// Canonical handles through a reader without Seek.
			e = newHeap(t, r)
			var canon []*checkpointv1.KeyedStateHandle
			for _, h := range handles {
				if h.Format == snapshot.FormatCanonical {
					canon = append(canon, h)
				}
			}
			must(t, snapshot.RestoreKeyed(ctx, e, canon, noSeekOpen(st), r))
			// The native ones through Restore.
			var native []*checkpointv1.KeyedStateHandle
			for _, h := range handles {
				if h.Format == snapshot.FormatPebble {
					native = append(native, h)
				}
			}
			must(t, snapshot.Restore(ctx, e, native, st, r, t.TempDir()))
		} else {
			e = restoreInto(t, dst, st, handles, r)
		}
		for kk, v := range dump(t, e) {
			if _, dup := got[kk]; dup {
				t.Fatalf("entry %s restored twice", kk)
			}
			got[kk] = v
		}
		err := e.Iterate(all, func(en statebackend.Entry) error {
			if owner := keygroup.OperatorIndex(en.KeyGroup, maxPar, newN); owner != j {
				return fmt.Errorf("entry of key group %d in subtask %d, owner %d", en.KeyGroup, j, owner)
			}
			return nil
		})
		must(t, err)
	}
	equalDumps(t, got, want)
}

func TestRescale(t *testing.T) {
	for _, c := range []struct {
		old, new int
		dst      kind
		seek     bool
	}{
		{1, 3, heapKind, true},
		{1, 3, pebbleKind, true},
		{3, 2, heapKind, true},
		{3, 2, pebbleKind, true},
		{3, 2, heapKind, false},
		{2, 5, heapKind, false},
	} {
		t.Run(fmt.Sprintf("%d-to-%d-%s-seek=%v", c.old, c.new, c.dst, c.seek), func(t *testing.T) {
			rescale(t, c.old, c.new, c.dst, c.seek)
		})
	}
}

// Timers survive a snapshot and fire after restore, in order.
func TestTimersSurvive(t *testing.T) {
	for _, src := range []kind{heapKind, pebbleKind} {
		for _, dst := range []kind{heapKind, pebbleKind} {
			t.Run(string(src)+"-"+string(dst), func(t *testing.T) {
				b := newBackend(t, src, all)
				fill(t, b, declare(t, b, false), 0, 500)
				st := newStorage(t)
				_, res := snap(t, b, st, 7, snapshot.Checkpoint, "op")
				e := restoreInto(t, dst, st, []*checkpointv1.KeyedStateHandle{res.Handle}, all)
				var fired []int64
				must(t, e.AdvanceWatermark(249, func(tm api.Timer) error {
					fired = append(fired, tm.Timestamp)
					if string(tm.Namespace) != "w1" || string(tm.Key) != fmt.Sprint("k", tm.Timestamp) {
						return fmt.Errorf("timer %+v", tm)
					}
					return nil
				}))
				if len(fired) != 250 || fired[0] != 0 || fired[249] != 249 {
					t.Fatalf("fired %d event-time timers (%v...)", len(fired), fired[:min(3, len(fired))])
				}
				next, ok, err := e.NextTimer(api.ProcessingTime)
				if err != nil || !ok || next != 0 {
					t.Fatalf("next processing timer %d %v %v", next, ok, err)
				}
			})
		}
	}
}

// A large Pebble state that changes little between checkpoints uploads a
// small fraction of its size; restoring the incremental checkpoint gives
// the full state.
func TestIncrementalPebble(t *testing.T) {
	// One memtable holds the whole state, so the first checkpoint is one
	// SST and no compaction rewrites it before the second (L0 stays below
	// Pebble's compaction threshold): the test measures what the snapshot
	// engine uploads, not Pebble's compaction schedule.
	po := pebbleOpts(all)
	po.MemTableSize = 64 << 20
	b, err := pebble.Open(filepath.Join(t.TempDir(), "db"), po)
	must(t, err)
	defer b.Close()
	v, err := api.GetValueState(b, api.ValueStateDescriptor[string]{Name: "big", Codec: api.StringCodec()})
	must(t, err)
	const n = 25_000 // ~2.5 MiB compressed: at most two L0 files, so the next flush stays below the L0 compaction threshold
	for i := 0; i < n; i++ {
		setKey(b, fmt.Sprint("k", i))
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		must(t, v.Update(strings.Repeat(hex.EncodeToString(sum[:]), 3))) // ~200 incompressible bytes
	}
	st := newStorage(t)
	k, res1 := snap(t, b, st, 1, snapshot.Checkpoint, "op-0")
	k.NotifyComplete(1)
	for i := 0; i < n/100; i++ {
		setKey(b, fmt.Sprint("k", i*100))
		must(t, v.Update("changed"))
	}
	res2 := snapWith(t, k, st, 2, snapshot.Checkpoint, "op-0")
	t.Logf("checkpoint 1: state %d bytes, uploaded %d; checkpoint 2: state %d, uploaded %d (%.1f%%)",
		res1.StateSize, res1.UploadedSize, res2.StateSize, res2.UploadedSize, 100*float64(res2.UploadedSize)/float64(res2.StateSize))
	if res1.UploadedSize != res1.StateSize || res1.StateSize < n*200/4 {
		t.Fatalf("first checkpoint uploaded %d of %d", res1.UploadedSize, res1.StateSize)
	}
	if res2.UploadedSize*10 > res2.StateSize {
		t.Fatalf("incremental checkpoint uploaded %d of %d bytes", res2.UploadedSize, res2.StateSize)
	}
	var shared int
	for _, f := range res2.Handle.Files {
		if f.Shared {
			shared++
			if !storage.IsSharedPath(f.Path) || !strings.HasSuffix(f.LocalName, ".sst") {
				t.Fatalf("shared file %+v", f)
			}
		} else if !strings.HasPrefix(f.Path, "job/chk-2/") {
			t.Fatalf("task-owned file %+v outside the checkpoint dir", f)
		}
	}
	if shared < 2 {
		t.Fatalf("%d shared files in %+v", shared, res2.Handle.Files)
	}
	want := dump(t, b)
	for _, dst := range []kind{pebbleKind, heapKind} {
		got := restoreInto(t, dst, st, []*checkpointv1.KeyedStateHandle{res2.Handle}, all)
		equalDumps(t, dump(t, got), want)
	}

	k.NotifyComplete(2)

	// A checkpoint that never completed does not make its files reusable:
	// the next one uploads them again (the registry may delete them with
	// the aborted checkpoint).
	setKey(b, "k1")
	must(t, v.Update("again"))
	res3 := snapWith(t, k, st, 3, snapshot.Checkpoint, "op-0")
	k.NotifyAborted(3)
	res4 := snapWith(t, k, st, 4, snapshot.Checkpoint, "op-0") // no change: no new SST
	byName := func(res *snapshot.KeyedResult) map[string]string {
		m := map[string]string{}
		for _, f := range res.Handle.Files {
			if f.Shared {
				m[f.LocalName] = f.Path
			}
		}
		return m
	}
	in2, in3, in4 := byName(res2), byName(res3), byName(res4)
	var reuploaded int
	for name, p3 := range in3 {
		switch {
		case in2[name] != "":
			if in4[name] != in2[name] {
				t.Fatalf("confirmed file %s: checkpoint 4 has %q, checkpoint 2 %q", name, in4[name], in2[name])
			}
		case in4[name] == p3 || in4[name] == "":
			t.Fatalf("file %s of aborted checkpoint 3 reused by checkpoint 4 as %q", name, in4[name])
		default:
			reuploaded++
		}
	}
	// (Pebble may have compacted between 2 and 3: then every file of 3 is new.)
	if reuploaded == 0 || res4.UploadedSize == 0 {
		t.Fatalf("checkpoint 4 re-uploaded %d files, %d bytes: %v / %v / %v", reuploaded, res4.UploadedSize, in2, in3, in4)
	}
}

// A native snapshot restored in place is snapshotted incrementally again
// without re-uploading the files it was restored from.
func TestNativeRestoreSeedsIncremental(t *testing.T) {
	b := newPebble(t, all)
	fill(t, b, declare(t, b, false), 0, 5000)
	st := newStorage(t)
	k, res := snap(t, b, st, 1, snapshot.Checkpoint, "op-0")
	k.NotifyComplete(1)
	e := restoreInto(t, pebbleKind, st, []*checkpointv1.KeyedStateHandle{res.Handle}, all)
	k2, err := snapshot.NewKeyed(e, snapshot.KeyedOptions{WorkDir: t.TempDir(), Restored: []*checkpointv1.KeyedStateHandle{res.Handle}})
	must(t, err)
	res2 := snapWith(t, k2, st, 2, snapshot.Checkpoint, "op-0")
	var sharedUploaded int64
	for _, f := range res2.Handle.Files {
		if f.Shared && !strings.Contains(f.Path, "/shared/") {
			t.Fatalf("shared file %+v", f)
		}
	}
	sharedUploaded = res2.UploadedSize
	if sharedUploaded*2 > res2.StateSize {
		t.Fatalf("restored backend re-uploaded %d of %d bytes", sharedUploaded, res2.StateSize)
	}
}

// Corrupt and truncated files give ErrCorrupt errors that name the file and
// the key group, never a panic.
func TestCorruptKeyed(t *testing.T) {
	b := newHeap(t, all)
	fill(t, b, declare(t, b, false), 0, 800)
	st := newStorage(t)
	_, res := snap(t, b, st, 1, snapshot.Full, "op")
	path := res.Handle.Files[0].Path
	data, err := st.ReadFile(ctx, path)
	must(t, err)
	offs := res.Handle.KeyGroupOffsets
	cases := map[string][]byte{
		"flipped byte in key group 5": func() []byte {
			d := bytes.Clone(data)
			d[offs[5]+14] ^= 0x40
			return d
		}(),
		"truncated in key group 100": data[:offs[100]+20],
		"truncated header":           data[:10],
		"bad magic":                  append([]byte("FLOWKSTX"), data[8:]...),
	}
	for name, d := range cases {
		t.Run(name, func(t *testing.T) {
			p := "bad/" + strings.ReplaceAll(name, " ", "-")
			must(t, st.WriteFile(ctx, p, d))
			h := &checkpointv1.KeyedStateHandle{KeyGroupStart: 0, KeyGroupEnd: maxPar - 1, Format: snapshot.FormatCanonical,
				Files: []*checkpointv1.FileHandle{{Path: p}}, KeyGroupOffsets: offs}
			err := snapshot.RestoreKeyed(ctx, newHeap(t, all), []*checkpointv1.KeyedStateHandle{h}, st.Open, all)
			if !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), p) {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(name, "key group") && !strings.Contains(err.Error(), "key group "+strings.Fields(name)[len(strings.Fields(name))-1]) {
				t.Fatalf("error does not name the key group: %v", err)
			}
			_, err = snapshot.ReadKeyed(bytes.NewReader(d), p, func(statebackend.Entry) error { return nil })
			if !errors.Is(err, snapshot.ErrCorrupt) {
				t.Fatalf("ReadKeyed err = %v", err)
			}
		})
	}
	// Another max parallelism is refused, not misread.
	e, err := pebble.Open(t.TempDir(), pebble.Options{Options: statebackend.Options{MaxParallelism: 64}})
	must(t, err)
	defer e.Close()
	err = snapshot.RestoreKeyed(ctx, e, []*checkpointv1.KeyedStateHandle{{KeyGroupEnd: maxPar - 1, Format: "canonical",
		Files: []*checkpointv1.FileHandle{{Path: path}}}}, st.Open, keygroup.Range{Start: 0, End: 63})
	if !errors.Is(err, snapshot.ErrMismatch) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzReadKeyed(f *testing.F) {
	b, err := newFuzzBackend()
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	if _, _, err := snapshot.WriteKeyed(ctx, &buf, b, keygroup.Range{Start: 0, End: 7}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:40])
	f.Add([]byte("FLOWKST1\x00\x00\x00\x01\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		_, err := snapshot.ReadKeyed(bytes.NewReader(data), "fuzz", func(e statebackend.Entry) error {
			n++
			return nil
		})
		if err != nil && !errors.Is(err, snapshot.ErrCorrupt) && !errors.Is(err, snapshot.ErrVersion) {
			t.Fatalf("error not wrapping ErrCorrupt: %v", err)
		}
	})
}

func newFuzzBackend() (*statebackend.Engine, error) {
	b, err := newHeapPlain(keygroup.Range{Start: 0, End: 7})
	if err != nil {
		return nil, err
	}
	v, err := api.GetValueState(b, api.ValueStateDescriptor[string]{Name: "v", Codec: api.StringCodec()})
	if err != nil {
		return nil, err
	}
	for i := 0; i < 50; i++ {
		k := fmt.Sprint("k", i)
		if setKey(b, k) {
			if err := errors.Join(v.Update(k), b.RegisterEventTimeTimer(int64(i), nil)); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

// Operator state is split, unioned and broadcast across a new parallelism.
func TestOperatorStateRedistribution(t *testing.T) {
	st := newStorage(t)
	split := api.OperatorStateSpec{Name: "offsets", Mode: api.SplitList, ValueCodec: "int64"}
	union := api.OperatorStateSpec{Name: "u", Mode: api.UnionList, ValueCodec: "string"}
	bc := api.OperatorStateSpec{Name: "rules", Mode: api.Broadcast, KeyCodec: "string", ValueCodec: "string"}
	var old []*checkpointv1.SubtaskState
	for i := 0; i < 2; i++ {
		ops := statebackend.NewOperatorStore()
		l, err := ops.OperatorList(split)
		must(t, err)
		for j := 0; j < 3; j++ {
			l.Append([]byte(fmt.Sprintf("s%d-%d", i, j)))
		}
		u, err := ops.OperatorList(union)
		must(t, err)
		u.Append([]byte(fmt.Sprint("u", i)))
		m, err := ops.BroadcastMap(bc)
		must(t, err)
		m.Put([]byte("a"), []byte("1"))
		m.Put([]byte("b"), []byte("2"))
		p, err := snapshot.Sync(1, snapshot.Checkpoint, snapshot.Operator{Subtask: i, OperatorState: ops, SourcePosition: []byte{byte(i)}})
		must(t, err)
		l.Append([]byte("after-sync")) // not in the snapshot
		ss, err := p.Async(ctx, snapshot.Target{Store: st, Dir: "job/chk-1", Name: fmt.Sprint("src-", i)})
		must(t, err)
		if len(ss.OperatorState) != 3 || ss.StateSize != ss.UploadedSize+1 || ss.SourcePosition[0] != byte(i) {
			t.Fatalf("subtask state %+v", ss)
		}
		old = append(old, ss)
	}
	var hs [][]*checkpointv1.OperatorStateHandle
	for _, ss := range old {
		hs = append(hs, ss.OperatorState)
	}
	shares, err := snapshot.RedistributeOperatorState(ctx, st.Open, hs, 3)
	must(t, err)
	var splitAll []string
	for i, share := range shares {
		ops := statebackend.NewOperatorStore()
		must(t, ops.Restore(share))
		l, _ := ops.OperatorList(split)
		for _, it := range l.Get() {
			splitAll = append(splitAll, string(it))
		}
		if len(l.Get()) != 2 {
			t.Fatalf("new subtask %d got %d split elements", i, len(l.Get()))
		}
		u, _ := ops.OperatorList(union)
		if len(u.Get()) != 2 || string(u.Get()[0]) != "u0" || string(u.Get()[1]) != "u1" {
			t.Fatalf("union list of subtask %d: %q", i, u.Get())
		}
		m, _ := ops.BroadcastMap(bc)
		if v, ok := m.Get([]byte("b")); !ok || string(v) != "2" {
			t.Fatalf("broadcast map of subtask %d", i)
		}
	}
	if got := strings.Join(splitAll, ","); got != "s0-0,s0-1,s0-2,s1-0,s1-1,s1-2" {
		t.Fatalf("split elements %s", got)
	}
	// A corrupt operator state file fails with ErrCorrupt.
	data, err := st.ReadFile(ctx, hs[0][0].File.Path)
	must(t, err)
	data[len(data)-6] ^= 1
	must(t, st.WriteFile(ctx, hs[0][0].File.Path, data))
	if _, err := snapshot.ReadOperatorState(ctx, st.Open, hs[0]); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
}

// Sync + Async of a keyed operator with operator state fills a SubtaskState.
func TestSubtaskState(t *testing.T) {
	b := newPebble(t, all)
	fill(t, b, declare(t, b, false), 0, 1000)
	k, err := snapshot.NewKeyed(b, snapshot.KeyedOptions{WorkDir: t.TempDir()})
	must(t, err)
	ops := statebackend.NewOperatorStore()
	l, _ := ops.OperatorList(api.OperatorStateSpec{Name: "x", Mode: api.SplitList})
	l.Append([]byte("1"))
	st := newStorage(t)
	p, err := snapshot.Sync(3, snapshot.Checkpoint, snapshot.Operator{Subtask: 2, Keyed: k, OperatorState: ops})
	must(t, err)
	ss, err := p.Async(ctx, snapshot.Target{Store: st, Dir: "job/chk-3", SharedDir: "job/shared", Name: "op-2"})
	must(t, err)
	if ss.Subtask != 2 || len(ss.Keyed) != 1 || len(ss.OperatorState) != 1 || ss.StateSize == 0 || ss.UploadedSize != ss.StateSize {
		t.Fatalf("%+v", ss)
	}
	for _, f := range storage.SubtaskFiles(ss) {
		if ok, err := st.Exists(ctx, f.Path); err != nil || !ok {
			t.Fatalf("file %s missing: %v", f.Path, err)
		}
	}
	// Discard removes the local checkpoint directory.
	work := t.TempDir()
	k2, err := snapshot.NewKeyed(b, snapshot.KeyedOptions{WorkDir: work})
	must(t, err)
	kp, err := k2.Sync(4, snapshot.Checkpoint)
	must(t, err)
	must(t, kp.Discard())
	if ents, _ := filepathGlob(work); len(ents) != 0 {
		t.Fatalf("work dir not cleaned: %v", ents)
	}
}

func filepathGlob(dir string) ([]string, error) { return filepath.Glob(filepath.Join(dir, "*")) }
