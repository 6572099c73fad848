package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// versitygw is a real S3 gateway (posix backend) on a loopback port.
type versitygw struct {
	endpoint string // http://127.0.0.1:PORT
	root     string // the posix root: a bucket is a directory in it
	log      *syncBuffer
}

// findVersitygw finds the binary `make tools` installs.
func findVersitygw() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(gopath))) {
			p := filepath.Join(dir, "bin", "versitygw")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	return "", errors.New("versitygw not found: run `make tools`")
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects the server's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startVersitygw starts versitygw for the test and stops it at cleanup.
func startVersitygw(t *testing.T) *versitygw {
	t.Helper()
	bin, err := findVersitygw()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for attempt := 0; ; attempt++ {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		out := &syncBuffer{}
		cmd := exec.Command(bin, "--access", "testkey", "--secret", "testsecret", "--region", "us-east-1", "--port", addr, "posix", root)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		deadline := time.Now().Add(20 * time.Second)
		ready := false
		for !ready && time.Now().Before(deadline) {
			select {
			case err := <-exited:
				exited <- err // for stop
				if attempt < 3 && strings.Contains(out.String(), "address already in use") {
					goto retry
				}
				t.Fatalf("versitygw exited before it was ready (%v):\n%s", err, out.String())
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				_ = c.Close()
				ready = true
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !ready {
			stop()
			t.Fatalf("versitygw did not listen on %s within 20s:\n%s", addr, out.String())
		}
		t.Cleanup(func() {
			stop()
			if t.Failed() || testing.Verbose() {
				t.Logf("versitygw output:\n%s", out.String())
			}
		})
		return &versitygw{endpoint: "http://" + addr, root: root, log: out}
	retry:
		stop()
	}
}

// bucketURL makes a bucket (a directory of the posix root) and returns the
// storage URL of a fresh prefix in it.
func (v *versitygw) bucketURL(t *testing.T, bucket string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(v.root, bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("s3://%s/flow/t%x?endpoint=%s&region=us-east-1&use_path_style=true", bucket, b, v.endpoint)
}

func TestS3Storage(t *testing.T) {
	v := startVersitygw(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testkey")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testsecret")
	// Keep the SDK away from the machine's own AWS configuration.
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	runConformance(t, backend{
		name: "s3",
		base: func(t *testing.T) string { return v.bucketURL(t, "checkpoints") },
		// The AWS transfer manager sends objects under 16 MiB as one PUT;
		// this one goes as a multipart upload of 5 MiB parts.
		bigSize: 21 << 20,
	})
	// The server saw a multipart upload (POST ...?uploads, PUT ...?partNumber=).
	if log := v.log.String(); !strings.Contains(log, "/job/chk-1/big | - | uploads") || !strings.Contains(log, "partNumber=5") {
		t.Fatalf("the big streamed write was not a 5-part multipart upload; server log:\n%s", log)
	}

	ctx := context.Background()
	t.Run("objects land in the bucket", func(t *testing.T) {
		u := v.bucketURL(t, "checkpoints")
		s, err := Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.WriteFile(ctx, "job/chk-1/x", []byte("on disk")); err != nil {
			t.Fatal(err)
		}
		prefix := strings.TrimPrefix(strings.SplitN(u, "?", 2)[0], "s3://checkpoints/")
		got, err := os.ReadFile(filepath.Join(v.root, "checkpoints", prefix, "job", "chk-1", "x"))
		if err != nil || string(got) != "on disk" {
			t.Fatalf("object in the gateway's file system: %q %v", got, err)
		}
		if !strings.HasPrefix(s.URLOf("job/chk-1"), "s3://checkpoints/"+prefix+"/job/chk-1?") {
			t.Fatalf("URLOf %s", s.URLOf("job/chk-1"))
		}
	})
	t.Run("missing bucket", func(t *testing.T) {
		u := fmt.Sprintf("s3://nosuchbucket/x?endpoint=%s&region=us-east-1&use_path_style=true", v.endpoint)
		if _, err := Open(ctx, u); err == nil || !strings.Contains(err.Error(), "nosuchbucket") || !strings.Contains(err.Error(), "credentials") {
			t.Fatalf("open a missing bucket: %v", err)
		}
	})
	t.Run("wrong credentials", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
		_, err := Open(ctx, v.bucketURL(t, "checkpoints"))
		if err == nil || !strings.Contains(err.Error(), "check the bucket name, endpoint and credentials") {
			t.Fatalf("open with a wrong secret: %v", err)
		}
	})
}
