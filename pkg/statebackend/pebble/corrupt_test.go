package pebble_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
)

// nativeCheckpoint writes n values into a Pebble backend and returns a
// native checkpoint of it (closed, so the files are final).
func nativeCheckpoint(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	b, err := pebble.Open(filepath.Join(dir, "db"), pebble.Options{CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	v, err := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		setKey(b, fmt.Sprint(i))
		if err := v.Update(int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	ck := filepath.Join(dir, "ck")
	if err := pebble.Checkpoint(b, ck); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return ck
}

// flipByte inverts one byte of the checkpoint's only SST file, inside its
// first data block (which starts at offset 0), and returns the file.
func flipByte(t *testing.T, ck string) string {
	t.Helper()
	ssts, err := filepath.Glob(filepath.Join(ck, "*.sst"))
	if err != nil || len(ssts) != 1 {
		t.Fatalf("SST files of %s: %v %v", ck, ssts, err)
	}
	b, err := os.ReadFile(ssts[0])
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0xFF
	if err := os.WriteFile(ssts[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	return ssts[0]
}

func checkCorruptErr(t *testing.T, err error, names ...string) {
	t.Helper()
	if !errors.Is(err, pebble.ErrCorrupt) || !errors.Is(err, statebackend.ErrCorrupt) {
		t.Fatalf("error %v does not wrap pebble.ErrCorrupt and statebackend.ErrCorrupt", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans several lines: %q", msg)
	}
	if !strings.Contains(msg, "corrupt") || !strings.Contains(msg, "checksum mismatch") {
		t.Errorf("error does not say the file is corrupt: %q", msg)
	}
	for _, n := range names {
		if !strings.Contains(msg, n) {
			t.Errorf("error does not name %s: %q", n, msg)
		}
	}
}

// VerifyFile checks every block of an SST against its checksum and names
// the file as the caller calls it; an intact checkpoint passes.
func TestVerifyFile(t *testing.T) {
	ck := nativeCheckpoint(t, 5000)
	ents, err := os.ReadDir(ck)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		p := filepath.Join(ck, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pebble.VerifyFile(p, "", fi.Size()); err != nil {
			t.Errorf("intact %s: %v", e.Name(), err)
		}
	}
	sst := flipByte(t, ck)
	fi, err := os.Stat(sst)
	if err != nil {
		t.Fatal(err)
	}
	name := "job/chk-7/shared/" + filepath.Base(sst)
	err = pebble.VerifyFile(sst, name, fi.Size())
	checkCorruptErr(t, err, name)
	if !strings.Contains(err.Error(), "restore from a savepoint or from an earlier checkpoint") {
		t.Errorf("error does not say what to do: %v", err)
	}
	// A file of another size than its checkpoint recorded (truncated).
	if err := pebble.VerifyFile(sst, name, fi.Size()+1); !errors.Is(err, pebble.ErrCorrupt) || !strings.Contains(err.Error(), name) {
		t.Errorf("size mismatch: %v", err)
	}
	if err := os.Truncate(sst, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	if err := pebble.VerifyFile(sst, name, 0); !errors.Is(err, pebble.ErrCorrupt) || !strings.Contains(err.Error(), name) {
		t.Errorf("truncated SST: %v", err)
	}
}

// A DB whose SST is corrupt (opened without VerifyFile) does not exit the
// process when Pebble finds the corruption: the read fails with one line
// naming the file, and every later operation fails with it too.
func TestCorruptionFoundWhileRunning(t *testing.T) {
	ck := nativeCheckpoint(t, 5000)
	sst := flipByte(t, ck)
	b, err := pebble.Open(ck, pebble.Options{CacheSize: 1 << 20})
	if err != nil {
		checkCorruptErr(t, err, sst)
		return
	}
	v, err := api.GetValueState(b, api.ValueStateDescriptor[int64]{Name: "v", Codec: api.Int64Codec()})
	if err != nil {
		t.Fatal(err)
	}
	var readErr error
	for i := 0; i < 5000 && readErr == nil; i++ {
		setKey(b, fmt.Sprint(i))
		_, readErr = v.Value()
	}
	checkCorruptErr(t, readErr, sst)
	// The backend stops using the DB.
	setKey(b, "new")
	if err := errors.Join(v.Update(1), b.Flush()); !errors.Is(err, pebble.ErrCorrupt) {
		t.Errorf("write after corruption: %v", err)
	}
	if err := pebble.Checkpoint(b, filepath.Join(t.TempDir(), "ck2")); !errors.Is(err, pebble.ErrCorrupt) {
		t.Errorf("checkpoint of a corrupt DB: %v", err)
	}
	if err := b.Close(); !errors.Is(err, pebble.ErrCorrupt) {
		t.Errorf("close: %v", err)
	}
}

// OpenReadOnly (the rescaling restore path and inspect) reports the
// corrupt file too.
func TestOpenReadOnlyCorrupt(t *testing.T) {
	ck := nativeCheckpoint(t, 5000)
	sst := flipByte(t, ck)
	ro, err := pebble.OpenReadOnly(ck, pebble.Options{})
	if err == nil {
		err = ro.Iterate(ro.KeyGroups(), func(statebackend.Entry) error { return nil })
		if cerr := ro.Close(); !errors.Is(cerr, pebble.ErrCorrupt) {
			t.Errorf("close: %v", cerr)
		}
	}
	checkCorruptErr(t, err, sst)
}

// flipManifestByte inverts the byte at off of the checkpoint's MANIFEST
// and returns the MANIFEST's name.
func flipManifestByte(t *testing.T, ck string, off int) string {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(ck, "MANIFEST-*"))
	if err != nil || len(ms) != 1 {
		t.Fatalf("MANIFEST of %s: %v %v", ck, ms, err)
	}
	fi, err := os.Stat(ms[0])
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int(fi.Size())
	}
	flipAt(t, ms[0], off)
	return filepath.Base(ms[0])
}

// VerifyCheckpoint finds a damaged MANIFEST, including one whose last
// record Pebble would skip silently (opening an empty DB: the restored
// state would be lost without an error). A failed Open leaves no
// goroutine behind (TestMain's goleak).
func TestVerifyCheckpoint(t *testing.T) {
	ck := nativeCheckpoint(t, 5000)
	if err := pebble.VerifyCheckpoint(ck, nil); err != nil {
		t.Fatalf("intact checkpoint: %v", err)
	}
	for _, tc := range []struct {
		name string
		off  int
	}{{"last record", -10}, {"first record", 30}} {
		t.Run(tc.name, func(t *testing.T) {
			ck := nativeCheckpoint(t, 5000)
			m := flipManifestByte(t, ck, tc.off)
			names := map[string]string{m: "job/chk-3/op-0-" + m}
			err := pebble.VerifyCheckpoint(ck, names)
			if !errors.Is(err, pebble.ErrCorrupt) || !strings.Contains(err.Error(), "state file job/chk-3/op-0-"+m+" is corrupt") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("VerifyCheckpoint: %v", err)
			}
			if e, err := pebble.Open(ck, pebble.Options{CacheSize: 1 << 20}); err == nil {
				_ = e.Close()
			} else if !errors.Is(err, pebble.ErrCorrupt) {
				t.Errorf("Open: %v", err)
			}
		})
	}
	t.Run("options", func(t *testing.T) {
		ck := nativeCheckpoint(t, 10)
		opts, err := filepath.Glob(filepath.Join(ck, "OPTIONS-*"))
		if err != nil || len(opts) != 1 {
			t.Fatalf("OPTIONS of %s: %v %v", ck, opts, err)
		}
		flipAt(t, opts[0], 0)
		err = pebble.VerifyCheckpoint(ck, nil)
		if !errors.Is(err, pebble.ErrCorrupt) || !strings.Contains(err.Error(), "state file "+opts[0]+" is corrupt") {
			t.Fatalf("VerifyCheckpoint: %v", err)
		}
	})
}

func flipAt(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0xFF
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
