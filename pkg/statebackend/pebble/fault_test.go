package pebble

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
)

// Fatalf of the Logger given to Pebble (which Pebble calls from its
// background goroutines too) neither exits nor panics: the backend keeps
// the first error, stops writing, and returns it from every operation.
func TestFatalfDoesNotExit(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s := e.Store().(*store)
	v, err := api.GetValueState(e, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	if err != nil {
		t.Fatal(err)
	}
	e.SetCurrentKey([]byte("k"), keygroup.Assign([]byte("k"), e.MaxParallelism()))
	if err := v.Update(1); err != nil {
		t.Fatal(err)
	}
	lg := pebbleLogger{l: slog.New(slog.DiscardHandler), f: s.fault}
	done := make(chan struct{})
	go func() { // as from a Pebble background goroutine
		defer close(done)
		lg.Fatalf("MANIFEST sync failed: %v", errors.New("input/output error"))
	}()
	<-done
	lg.Fatalf("a second fatal error") // the first one wins

	_, err = v.Value()
	if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "MANIFEST sync failed: input/output error") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("read after Fatalf: %v", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Errorf("a failed MANIFEST sync is not corruption: %v", err)
	}
	if err := e.Flush(); !errors.Is(err, ErrFatal) {
		t.Errorf("flush after Fatalf: %v", err)
	}
	if err := Checkpoint(e, t.TempDir()+"/ck"); !errors.Is(err, ErrFatal) {
		t.Errorf("checkpoint after Fatalf: %v", err)
	}
	if err := e.Close(); !errors.Is(err, ErrFatal) {
		t.Errorf("close after Fatalf: %v", err)
	}
}
