package datadir

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// holdEnv makes the test binary a helper process that holds the lock of the
// directory it names until it is killed.
const holdEnv = "FLOW_DATADIR_TEST_HOLD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holdEnv); dir != "" {
		if _, err := Lock(dir); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {} // hold until killed
	}
	os.Exit(m.Run())
}

func TestLockExcludesASecondHolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	h, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(dir)
	var inUse *InUseError
	if !errors.Is(err, ErrInUse) || !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Fatalf("second Lock: %v, want ErrInUse naming pid %d", err, os.Getpid())
	}
	want := fmt.Sprintf("data dir %s is in use by another process (pid %d): stop it or choose another --data-dir", dir, os.Getpid())
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	h2, err := Lock(dir)
	if err != nil {
		t.Fatalf("Lock after Release: %v", err)
	}
	h2.Release()
}

// A process that holds the lock is named by its pid; once it is SIGKILLed
// the directory can be locked at once (the kernel drops the flock).
func TestLockHeldByAnotherProcessAndKilled(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper: %q, %v", line, err)
	}

	_, err = Lock(dir)
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != cmd.Process.Pid {
		t.Fatalf("Lock while another process holds it: %v, want pid %d", err, cmd.Process.Pid)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	h, err := Lock(dir)
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	defer h.Release()
	if got := readPID(filepath.Join(dir, FileName)); got != os.Getpid() {
		t.Fatalf("lock file names pid %d, want ours (%d)", got, os.Getpid())
	}
}

// A lock file left with a longer pid than ours is cut to ours.
func TestLockFileNamesTheHolder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, []byte("123456789012\nleftover\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d\n", os.Getpid()); string(b) != want {
		t.Fatalf("lock file holds %q, want %q", b, want)
	}
}

func TestLockErrors(t *testing.T) {
	// The data dir path is a file: one error naming it, not ErrInUse.
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Lock(file)
	if err == nil || errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), file) {
		t.Fatalf("Lock on a file: %v", err)
	}
	var h *Held
	if err := h.Release(); err != nil {
		t.Fatalf("Release of nil: %v", err)
	}
}
