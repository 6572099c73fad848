package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestOpenBadURLs(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ url, says string }{
		{"", "no scheme"},
		{"/tmp/checkpoints", "no scheme"},
		{"hdfs://namenode/flow", `unsupported scheme "hdfs"`},
		{"file://relative/dir", `host "relative" is not allowed`},
		{"file:relative", "not a storage directory URL"},
		{"file:///tmp/x?create_dir=1", "no query parameters"},
		{"s3:///prefix", "bucket name is missing"},
		{"gs://", "bucket name is missing"},
		{"mem://x?nomd5=1", "no query parameters"},
		{"s3://user:pw@bucket/x", "not a storage directory URL"},
		{"%zz", "does not parse"},
	} {
		_, err := Open(ctx, c.url)
		if !errors.Is(err, ErrBadURL) {
			t.Errorf("Open(%q): %v, want ErrBadURL", c.url, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.says) || !strings.Contains(msg, "file:///absolute/dir, s3://bucket/prefix") || strings.Contains(msg, "\n") {
			t.Errorf("Open(%q): %q should name the problem (%q) and the supported schemes on one line", c.url, msg, c.says)
		}
		if c.url != "" && c.url != "%zz" && !strings.Contains(msg, c.url) {
			t.Errorf("Open(%q): %q does not name the URL", c.url, msg)
		}
	}
	if _, err := Open(ctx, "mem://x", WithPartSize(0)); !errors.Is(err, ErrBadURL) {
		t.Errorf("part size 0: %v", err)
	}
}

// Remote schemes are registered through the blob layer: opening them gets
// past URL parsing and fails (or not) on their own terms, never as an
// unsupported scheme.
func TestRemoteSchemesRegistered(t *testing.T) {
	ctx := context.Background()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "missing.json"))
	// Without credentials the Google and Azure clients fall back to the
	// cloud metadata server (169.254.169.254), which answers on some
	// machines and leaves a kept-alive connection behind: point them at a
	// closed local port instead.
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:1")
	t.Setenv("GCE_METADATA_IP", "127.0.0.1:1")
	for _, u := range []string{
		"gs://flow-bucket/prefix",
		"azblob://container/prefix",
		"s3://flow-bucket/prefix?region=us-east-1&no_such_param=1",
	} {
		_, err := Open(ctx, u)
		if err == nil {
			t.Errorf("Open(%q) succeeded without credentials or server", u)
			continue
		}
		if errors.Is(err, ErrBadURL) || strings.Contains(err.Error(), "unsupported scheme") || !strings.Contains(err.Error(), u) {
			t.Errorf("Open(%q): %v", u, err)
		}
	}
}

func TestFileURLs(t *testing.T) {
	ctx := context.Background()
	dir := filepath.ToSlash(t.TempDir())
	s, err := Open(ctx, "file://"+dir+"/a/b/")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.URL() != "file://"+dir+"/a/b" || s.URLOf("job/chk-1") != "file://"+dir+"/a/b/job/chk-1" {
		t.Fatalf("URL %s, URLOf %s", s.URL(), s.URLOf("job/chk-1"))
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "b")); err != nil {
		t.Fatalf("Open did not create the directory: %v", err)
	}
	if err := s.WriteFile(ctx, "job/chk-1/x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Plain files, no sidecars: a checkpoint directory is a plain copy.
	entries, err := os.ReadDir(filepath.Join(dir, "a", "b", "job", "chk-1"))
	if err != nil || len(entries) != 1 || entries[0].Name() != "x" {
		t.Fatalf("directory holds %v (%v)", entries, err)
	}
	// Deleting the last file removes the emptied directories, not the base.
	if err := s.Delete(ctx, "job/chk-1/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "b", "job")); !os.IsNotExist(err) {
		t.Fatalf("empty job directory left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "b")); err != nil {
		t.Fatalf("base directory removed: %v", err)
	}
	// Readers do not create what they look for.
	if _, err := ReadMetadata(ctx, "file://"+dir+"/nope/job/chk-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read from a missing directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !os.IsNotExist(err) {
		t.Fatalf("reading created a directory: %v", err)
	}
	// localhost is the same as no host.
	s2, err := Open(ctx, "file://localhost"+dir+"/a/b")
	if err != nil || s2.URL() != s.URL() {
		t.Fatalf("localhost: %v %v", s2, err)
	}
	_ = s2.Close()
}

func TestMemURLsShareByName(t *testing.T) {
	ctx := context.Background()
	a, err := Open(ctx, "mem://shared-by-name-test/base")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WriteFile(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	b, err := Open(ctx, "mem://shared-by-name-test")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.ReadFile(ctx, "base/k"); err != nil || string(got) != "v" {
		t.Fatalf("named mem bucket not shared (or closed by Close): %q %v", got, err)
	}
	private, _ := Open(ctx, "mem://")
	if ok, _ := private.Exists(ctx, "base/k"); ok {
		t.Fatal("mem:// is not private")
	}
}

func TestLayoutNames(t *testing.T) {
	for name, want := range map[string]int64{"chk-0": 0, "chk-7": 7, "chk-1234567890123": 1234567890123} {
		if got, ok := ParseCheckpointDirName(name); !ok || got != want {
			t.Errorf("%s: %d %t", name, got, ok)
		}
	}
	for _, name := range []string{"chk-", "chk--1", "chk-+1", "chk-01", "chk-1a", "chk-99999999999999999999", "savepoint-x", "shared"} {
		if _, ok := ParseCheckpointDirName(name); ok {
			t.Errorf("%s parsed", name)
		}
	}
	if !IsSharedPath("j/shared/x.sst") || IsSharedPath("j/chk-1/x") || IsSharedPath("shared/x") || IsSharedPath("j/shared/") {
		t.Error("IsSharedPath")
	}
	if a, b := NewSavepointDirName("ab"), NewSavepointDirName("ab"); a == b || !strings.HasPrefix(a, "savepoint-ab-") {
		t.Errorf("savepoint names %s %s", a, b)
	}
}
