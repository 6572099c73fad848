package pebble

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	cpebble "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// VerifyFile checks one file of a native Pebble checkpoint (as written by
// Checkpoint, typically just downloaded from checkpoint storage) at the
// local path: when size > 0 (the size its checkpoint recorded) the file
// must have it, and an SST file (*.sst) must open and every one of its
// blocks must match its checksum (Pebble's own, crc32c or xxhash, written
// with the block). Other files are checked by VerifyCheckpoint (the
// MANIFEST) and when the DB opens. name is what errors call the file (its path in checkpoint
// storage; path when empty). A corrupt file is an error wrapping
// ErrCorrupt; a file that cannot be read is another error.
//
// It reads the whole SST once; restoring a native checkpoint calls it for
// every file before opening the DB, so a corrupt file fails the restore
// at once, naming the file, instead of failing a read later.
func VerifyFile(path, name string, size int64) error {
	if name == "" {
		name = path
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("verify state file %s: %w", name, err)
	}
	if size > 0 && fi.Size() != size {
		return fmt.Errorf("state file %s is corrupt: %d bytes, its checkpoint recorded %d: restore from a savepoint or from an earlier checkpoint that does not use this file: %w", name, fi.Size(), size, ErrCorrupt)
	}
	if filepath.Ext(path) != ".sst" {
		return nil
	}
	f, err := vfs.Default.Open(path)
	if err != nil {
		return fmt.Errorf("verify state file %s: %w", name, err)
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("verify state file %s: %w", name, err)
	}
	ro := readerOptions()
	// Pebble's errors name the file by its number ("pebble: file 000012"):
	// the one in the local name, not 0.
	if n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".sst"), 10, 64); err == nil {
		setUint(&ro.CacheOpts.FileNum, n)
	}
	r, err := sstable.NewReader(context.Background(), readable, ro)
	if err != nil {
		_ = readable.Close()
		return verifyError(name, err)
	}
	err = r.ValidateBlockChecksums()
	if cerr := r.Close(); err == nil && cerr != nil {
		return fmt.Errorf("verify state file %s: %w", name, cerr)
	}
	if err != nil {
		return verifyError(name, err)
	}
	return nil
}

func verifyError(name string, err error) error {
	if cpebble.IsCorruptionError(err) {
		return fmt.Errorf("state file %s is corrupt: %s: restore from a savepoint or from an earlier checkpoint that does not use this file: %w", name, oneLine(err), ErrCorrupt)
	}
	return fmt.Errorf("verify state file %s: %w", name, err)
}

// setUint sets *p (the type of a Pebble file number is internal to
// Pebble, so it is inferred here rather than named).
func setUint[T ~uint64](p *T, n uint64) { *p = T(n) }

// readerOptions are the SST reader options of the backend's DBs (its
// comparer, key schemas and merger).
func readerOptions() sstable.ReaderOptions {
	po := &cpebble.Options{Merger: listMerger, FS: vfs.Default}
	po.EnsureDefaults()
	return po.MakeReaderOptions()
}

// VerifyCheckpoint checks the OPTIONS and MANIFEST files of the native
// checkpoint in dir, once every file of the checkpoint is there (each
// checked with VerifyFile): OPTIONS must parse and fit the backend's
// options, and the DB must open read-only and reference exactly the SST
// files in dir. Pebble reads a MANIFEST whose last record is damaged as if
// it ended before that record, so without this check a DB restored from it
// would silently lack the SSTs the record added (and delete them as
// obsolete). names maps local file names to what errors call them (their
// paths in checkpoint storage; nil: the local paths). A corrupt checkpoint
// is an error wrapping ErrCorrupt.
func VerifyCheckpoint(dir string, names map[string]string) error {
	name := func(local string) string {
		if n, ok := names[local]; ok {
			return n
		}
		return filepath.Join(dir, local)
	}
	manifest := "MANIFEST"
	if ms, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*")); len(ms) == 1 {
		manifest = name(filepath.Base(ms[0]))
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("verify pebble checkpoint %s: %w", dir, err)
	}
	// The OPTIONS file first, as Open checks it, so that an error there
	// names it rather than the MANIFEST.
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "OPTIONS-") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("verify pebble checkpoint %s: %w", dir, err)
		}
		o := &cpebble.Options{Merger: listMerger, FS: vfs.Default}
		o.EnsureDefaults()
		if err := o.CheckCompatibility(dir, string(b)); err != nil {
			return fmt.Errorf("state file %s is corrupt: %s: restore from a savepoint or from an earlier checkpoint: %w", name(e.Name()), oneLine(err), ErrCorrupt)
		}
	}
	po := &cpebble.Options{ReadOnly: true, DisableWAL: true, Merger: listMerger}
	f := newFault(dir, slog.New(slog.DiscardHandler), po)
	db, closer, err := openDB(dir, po)
	if err != nil {
		err = f.check(err)
		if cpebble.IsCorruptionError(err) {
			return fmt.Errorf("state file %s is corrupt: %s: restore from a savepoint or from an earlier checkpoint: %w", manifest, oneLine(err), ErrCorrupt)
		}
		return fmt.Errorf("verify pebble checkpoint %s: %w", dir, err)
	}
	tables, err := db.SSTables()
	err = f.check(err)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	_ = closer.Close()
	if err != nil {
		return fmt.Errorf("verify pebble checkpoint %s: %w", dir, err)
	}
	live := map[string]bool{}
	for _, level := range tables {
		for _, t := range level {
			live[fmt.Sprintf("%s.sst", t.BackingSSTNum)] = true
		}
	}
	var unlisted []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".sst") && !live[e.Name()] {
			unlisted = append(unlisted, name(e.Name()))
		}
	}
	if len(unlisted) > 0 {
		slices.Sort(unlisted)
		return fmt.Errorf("state file %s is corrupt: it does not list %d of the checkpoint's SST files (%s): restore from a savepoint or from an earlier checkpoint: %w",
			manifest, len(unlisted), strings.Join(unlisted, ", "), ErrCorrupt)
	}
	return nil
}
