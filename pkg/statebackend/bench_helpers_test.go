package statebackend_test

import (
	"io"
	"log/slog"
	"testing"

	cpebble "github.com/cockroachdb/pebble/v2"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type discardLogger struct{}

func (discardLogger) Infof(string, ...any)  {}
func (discardLogger) Errorf(string, ...any) {}
func (discardLogger) Fatalf(string, ...any) {}

// openRaw opens a plain Pebble DB with the backend's settings (no WAL,
// 64 MiB cache, default memtable size of the backend).
func openRaw(b *testing.B) *cpebble.DB {
	cache := cpebble.NewCache(64 << 20)
	defer cache.Unref()
	db, err := cpebble.Open(b.TempDir(), &cpebble.Options{Cache: cache, DisableWAL: true, MemTableSize: 16 << 20, Logger: discardLogger{}})
	if err != nil {
		b.Fatal(err)
	}
	return db
}
