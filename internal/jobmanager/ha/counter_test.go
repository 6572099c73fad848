package ha

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileCounter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := NewFileCounter(dir)
	if n, err := c.Get(ctx, "job-1"); err != nil || n != 0 {
		t.Fatalf("Get of a new job: %d, %v; want 0", n, err)
	}
	for want := int64(1); want <= 3; want++ {
		if n, err := c.GetAndIncrement(ctx, "job-1"); err != nil || n != want {
			t.Fatalf("GetAndIncrement: %d, %v; want %d", n, err, want)
		}
	}
	if err := c.SetAtLeast(ctx, "job-1", 2); err != nil {
		t.Fatal(err)
	}
	if err := c.SetAtLeast(ctx, "job-1", 7); err != nil {
		t.Fatal(err)
	}
	// Another counter on the same directory (a restarted JobManager)
	// continues above every id issued.
	c2 := NewFileCounter(dir)
	if n, err := c2.Get(ctx, "job-1"); err != nil || n != 7 {
		t.Fatalf("Get after a restart: %d, %v; want 7", n, err)
	}
	if n, _ := c2.Get(ctx, "job-2"); n != 0 {
		t.Fatalf("job-2 shares job-1's counter: %d", n)
	}
	if err := c2.Remove(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	if err := c2.Remove(ctx, "job-1"); err != nil {
		t.Fatalf("Remove of a removed job: %v", err)
	}
	if n, _ := c2.Get(ctx, "job-1"); n != 0 {
		t.Fatalf("Get after Remove: %d", n)
	}
	// No temporary file is left behind.
	ents, err := os.ReadDir(filepath.Join(dir, "checkpoint-ids"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("files left in checkpoint-ids: %v", ents)
	}
	if _, err := c.Get(ctx, "../x"); err == nil {
		t.Fatal("a job id with a slash was accepted")
	}
}

// A corrupt counter file is a one-line error naming the file and the fix.
func TestFileCounterCorrupt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := NewFileCounter(dir)
	if err := c.SetAtLeast(ctx, "job-1", 4); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "checkpoint-ids", "job-1")
	if err := os.WriteFile(p, []byte("\x00garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"Get":             func() error { _, err := c.Get(ctx, "job-1"); return err },
		"GetAndIncrement": func() error { _, err := c.GetAndIncrement(ctx, "job-1"); return err },
		"SetAtLeast":      func() error { return c.SetAtLeast(ctx, "job-1", 9) },
	} {
		err := f()
		if err == nil {
			t.Fatalf("%s of a corrupt file: no error", name)
		}
		if msg := err.Error(); !strings.Contains(msg, p) || !strings.Contains(msg, "delete it") || strings.Contains(msg, "\n") {
			t.Fatalf("%s: error %q should be one line naming %s and the fix", name, msg, p)
		}
	}
}
