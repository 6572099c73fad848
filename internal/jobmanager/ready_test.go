package jobmanager_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flow/internal/jobmanager"
)

// Ready follows the job store: ready while jobs can be written, not ready
// (one line naming the store) while its directory is unusable. Replacing
// the directory by a file denies writes even to root, unlike chmod.
func TestReadyFollowsTheJobStore(t *testing.T) {
	dir := t.TempDir()
	jm, err := jobmanager.New(jobmanager.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer jm.Close()
	ctx := context.Background()
	if err := jm.Ready(ctx); err != nil {
		t.Fatalf("Ready with a writable store: %v", err)
	}
	store := filepath.Join(dir, "jobs")
	if err := os.Rename(store, store+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = jm.Ready(ctx)
	if !errors.Is(err, jobmanager.ErrNotReady) || !strings.Contains(err.Error(), store) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Ready with the store replaced by a file: %v, want one line (ErrNotReady) naming %s", err, store)
	}
	if err := os.Remove(store); err != nil {
		t.Fatal(err)
	}
	if err := jm.Ready(ctx); err == nil {
		t.Fatal("Ready with the store directory missing: want an error")
	}
	if err := os.Rename(store+".away", store); err != nil {
		t.Fatal(err)
	}
	if err := jm.Ready(ctx); err != nil {
		t.Fatalf("Ready after the store came back: %v", err)
	}
	entries, err := os.ReadDir(store)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("the probe left %s in the store", e.Name())
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := jm.Ready(canceled); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Ready with a canceled context: %v", err)
	}
}
