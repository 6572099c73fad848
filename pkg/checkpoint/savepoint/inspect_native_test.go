package savepoint_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/checkpoint/savepoint"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

// Inspect verifies the files of a native Pebble checkpoint against
// Pebble's block checksums: an intact checkpoint passes, one flipped byte
// in an SST is an error naming the file (and wrapping pebble.ErrCorrupt);
// Check without ReadData reads only the metadata and headers.
func TestInspectVerifiesNativePebbleFiles(t *testing.T) {
	ctx := context.Background()
	reg := registry(t, v1)
	g := parseJob(t, reg, jobSpec(2, 0, true))
	parent := t.TempDir()
	dir := buildSavepoint(t, reg, g, parent, buildOptions{Pebble: true, Checkpoint: true, Records: clicks(500, 50, 3)})
	if _, err := savepoint.Inspect(ctx, dir); err != nil {
		t.Fatalf("intact native checkpoint: %v", err)
	}
	var ssts []string
	err := filepath.WalkDir(parent, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".sst") {
			ssts = append(ssts, p)
		}
		return err
	})
	if err != nil || len(ssts) == 0 {
		t.Fatalf("no SST files under %s: %v", parent, err)
	}
	sst := ssts[len(ssts)-1]
	b, err := os.ReadFile(sst)
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 0xFF // inside the first data block, which starts the file
	if err := os.WriteFile(sst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(parent, sst)
	if err != nil {
		t.Fatal(err)
	}
	_, err = savepoint.Inspect(ctx, dir)
	if !errors.Is(err, pebble.ErrCorrupt) || !errors.Is(err, statebackend.ErrCorrupt) {
		t.Fatalf("corrupt native checkpoint: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "state file "+filepath.ToSlash(rel)+" is corrupt") || strings.Contains(msg, "\n") {
		t.Fatalf("error does not name %s on one line: %q", rel, msg)
	}
	// A dry-run check that does not read the data still accepts it.
	if _, err := savepoint.Check(ctx, g, reg, dir, savepoint.CheckOptions{}); err != nil {
		t.Fatalf("check without reading data: %v", err)
	}
}
