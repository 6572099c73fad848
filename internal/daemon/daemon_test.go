package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func newFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("rpc-address", "127.0.0.1:6123", "")
	fs.String("data-dir", "/tmp/default", "")
	fs.Int("slots", 4, "")
	fs.String("log-level", "info", "")
	fs.String("config", "", "")
	return fs
}

func TestApplyConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("rpc-address: 0.0.0.0:7000\ndata-dir: /from/file\nslots: 8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := newFlags()
	if err := fs.Parse([]string{"--slots", "2"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FLOW_DATA_DIR": "/from/env"}
	if err := ApplyConfig(fs, cfg, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"slots":       "2",            // flag beats everything
		"data-dir":    "/from/env",    // env beats file
		"rpc-address": "0.0.0.0:7000", // file beats default
		"log-level":   "info",         // default
	}
	for k, v := range want {
		if got := fs.Lookup(k).Value.String(); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestApplyConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("slots: many\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := newFlags()
	_ = fs.Parse(nil)
	err := ApplyConfig(fs, cfg, func(string) string { return "" })
	if err == nil {
		t.Fatal("want errors for a bad value and an unknown key")
	}
	for _, want := range []string{`c.yaml:1: key "slots"`, `c.yaml:2: unknown key "bogus"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	fs = newFlags()
	_ = fs.Parse(nil)
	if err := ApplyConfig(fs, "", func(k string) string {
		if k == "FLOW_SLOTS" {
			return "x"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "FLOW_SLOTS") {
		t.Fatalf("want an error naming FLOW_SLOTS, got %v", err)
	}
}

func TestNewLogger(t *testing.T) {
	if _, err := NewLogger(os.Stderr, "json", "debug"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLogger(os.Stderr, "xml", "info"); err == nil {
		t.Fatal("want an error for --log-format xml")
	}
	if _, err := NewLogger(os.Stderr, "text", "loud"); err == nil {
		t.Fatal("want an error for --log-level loud")
	}
}
