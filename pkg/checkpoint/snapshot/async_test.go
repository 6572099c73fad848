package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// Async runs on another goroutine while the task keeps writing; the
// snapshot holds the state as of Sync (run with -race).
func TestAsyncConcurrentWithProcessing(t *testing.T) {
	for _, k := range []kind{heapKind, pebbleKind} {
		for _, mode := range []snapshot.Mode{snapshot.Checkpoint, snapshot.Full} {
			t.Run(fmt.Sprintf("%s-%v", k, mode), func(t *testing.T) {
				b := newBackend(t, k, all)
				s := declare(t, b, false)
				fill(t, b, s, 0, 3000)
				want := dump(t, b)
				st := newStorage(t)
				ks, err := snapshot.NewKeyed(b, snapshot.KeyedOptions{WorkDir: t.TempDir()})
				must(t, err)
				p, err := ks.Sync(1, mode)
				must(t, err)
				type result struct {
					res *snapshot.KeyedResult
					err error
				}
				done := make(chan result, 1)
				go func() {
					res, err := p.Async(ctx, snapshot.Target{Store: st, Dir: "job/chk-1", SharedDir: "job/shared", Name: "op-0"})
					done <- result{res, err}
				}()
				// The task goroutine keeps processing meanwhile.
				fill(t, b, s, 3000, 6000)
				for i := 0; i < 3000; i++ {
					setKey(b, fmt.Sprint("k", i))
					must(t, s.v.Update(-1), s.l.Clear())
				}
				must(t, b.Flush())
				r := <-done
				must(t, r.err)
				got := restoreInto(t, heapKind, st, []*checkpointv1.KeyedStateHandle{r.res.Handle}, all)
				equalDumps(t, dump(t, got), want)
			})
		}
	}
}

// A savepoint's paths are relative to its directory: moved elsewhere, it
// restores.
func TestSavepointRelocatable(t *testing.T) {
	root := t.TempDir()
	st, err := storage.Open(ctx, "file://"+root)
	must(t, err)
	defer st.Close()
	sp, err := st.Sub("savepoint-1")
	must(t, err)
	b := newPebble(t, all)
	fill(t, b, declare(t, b, false), 0, 2000)
	want := dump(t, b)
	ks, err := snapshot.NewKeyed(b, snapshot.KeyedOptions{WorkDir: t.TempDir()})
	must(t, err)
	p, err := snapshot.Sync(9, snapshot.Savepoint, snapshot.Operator{Subtask: 0, Keyed: ks})
	must(t, err)
	ss, err := p.Async(ctx, snapshot.Target{Store: sp, Name: "op-0"})
	must(t, err)
	for _, f := range storage.SubtaskFiles(ss) {
		if filepath.IsAbs(f.Path) || f.Shared || filepath.Dir(f.Path) != "." {
			t.Fatalf("savepoint file %+v is not relative to the savepoint", f)
		}
	}
	moved := filepath.Join(t.TempDir(), "elsewhere")
	must(t, os.Rename(filepath.Join(root, "savepoint-1"), moved))
	st2, err := storage.Open(ctx, "file://"+moved)
	must(t, err)
	defer st2.Close()
	for _, k := range []kind{heapKind, pebbleKind} {
		got := restoreInto(t, k, st2, ss.Keyed, all)
		equalDumps(t, dump(t, got), want)
	}
}

// A canceled Async fails and leaves no file behind.
func TestAsyncCanceled(t *testing.T) {
	b := newHeap(t, all)
	fill(t, b, declare(t, b, false), 0, 2000)
	st := newStorage(t)
	ks, err := snapshot.NewKeyed(b, snapshot.KeyedOptions{})
	must(t, err)
	p, err := ks.Sync(1, snapshot.Checkpoint)
	must(t, err)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Async(cctx, snapshot.Target{Store: st, Dir: "job/chk-1", Name: "op-0"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if ok, err := st.Exists(ctx, "job/chk-1/op-0-keyed.kst"); err != nil || ok {
		t.Fatalf("partial file left: %v %v", ok, err)
	}
}

// Several heap snapshots outstanding at once (max concurrent > 1), their
// Asyncs running on other goroutines while the task keeps writing, firing
// timers and expiring TTL state: each file is byte for byte what
// WriteKeyed wrote from the live backend at its Sync (run with -race).
func TestHeapConcurrentSnapshots(t *testing.T) {
	t.Cleanup(func() { clk.Set(1_000_000) })
	b := newHeap(t, all)
	s := declare(t, b, false)
	fill(t, b, s, 0, 3000)
	st := newStorage(t)
	ks, err := snapshot.NewKeyed(b, snapshot.KeyedOptions{})
	must(t, err)
	type result struct {
		res *snapshot.KeyedResult
		err error
	}
	const n = 3
	var wants [n][]byte
	var wantOffs [n][]int64
	var dones [n]chan result
	start := make(chan struct{})
	for i := range n {
		var buf bytes.Buffer
		offs, _, err := snapshot.WriteKeyed(ctx, &buf, b, all)
		must(t, err)
		wants[i], wantOffs[i] = buf.Bytes(), offs
		p, err := ks.Sync(int64(i+1), snapshot.Checkpoint)
		must(t, err)
		dones[i] = make(chan result, 1)
		go func() {
			<-start // all Asyncs run together, after the last Sync
			res, err := p.Async(ctx, snapshot.Target{Store: st, Dir: fmt.Sprint("job/chk-", i+1), Name: "op-0"})
			dones[i] <- result{res, err}
		}()
		// Between the Syncs: overwrite, clear, new keys, fire timers,
		// expire TTL entries.
		for j := i * 500; j < i*500+1000; j++ {
			setKey(b, fmt.Sprint("k", j))
			s.m.SetNamespace([]byte("w1"))
			must(t, s.v.Update(-int64(j)), s.l.Clear(), s.m.Put("z", int64(i)), s.m.Remove("x"))
		}
		fill(t, b, s, 3000+i*100, 3100+i*100)
		must(t, b.AdvanceWatermark(int64(i*700), func(api.Timer) error { return nil }))
		clk.Set(1_000_000 + int64(i+1)*int64(50*time.Minute/time.Millisecond))
		must(t, b.CleanupExpired())
	}
	close(start)
	// Keep writing while the Asyncs run.
	for j := 0; j < 6000; j++ {
		setKey(b, fmt.Sprint("k", j))
		must(t, s.v.Update(int64(j)), s.l.Add("more"), s.tt.Update("again"), b.RegisterEventTimeTimer(int64(j), nil))
	}
	must(t, b.AdvanceWatermark(5000, func(api.Timer) error { return nil }))
	for i := range n {
		r := <-dones[i]
		must(t, r.err)
		got, err := st.ReadFile(ctx, r.res.Handle.Files[0].Path)
		must(t, err)
		if !bytes.Equal(got, wants[i]) {
			t.Fatalf("snapshot %d: %d bytes differing from the %d bytes of the state at its Sync", i+1, len(got), len(wants[i]))
		}
		if !slices.Equal(r.res.Handle.KeyGroupOffsets, wantOffs[i]) {
			t.Fatalf("snapshot %d: key-group offsets differ", i+1)
		}
	}
	// Discarded and written pendings hold no view: Async again fails.
	p, err := ks.Sync(9, snapshot.Checkpoint)
	must(t, err)
	must(t, p.Discard(), p.Discard())
	if _, err := p.Async(ctx, snapshot.Target{Store: st, Dir: "job/chk-9", Name: "op-0"}); err == nil {
		t.Fatal("Async of a discarded snapshot succeeded")
	}
}
