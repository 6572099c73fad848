package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
