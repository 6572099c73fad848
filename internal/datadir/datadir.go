package datadir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FileName is the lock file inside the data directory.
const FileName = "flow.lock"

// ErrInUse is matched (errors.Is) by the error of a Lock whose directory
// another process holds.
var ErrInUse = errors.New("data dir is in use by another process")

// InUseError is Lock's error when another process holds the directory.
type InUseError struct {
	Dir string
	// PID of the holder, 0 when its lock file names none.
	PID int
}

func (e *InUseError) Error() string {
	holder := "pid unknown"
	if e.PID > 0 {
		holder = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data dir %s is in use by another process (%s): stop it or choose another --data-dir", e.Dir, holder)
}

// Is makes errors.Is(err, ErrInUse) hold.
func (e *InUseError) Is(target error) bool { return target == ErrInUse }

// Held is an exclusive lock on a data directory.
type Held struct {
	f *os.File
}

// Lock creates dir if needed and takes its lock without waiting. The lock
// lasts until Release or the end of the process.
func Lock(dir string) (*Held, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the data dir's lock file: %w", err)
	}
	busy, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	if busy {
		f.Close()
		return nil, &InUseError{Dir: dir, PID: readPID(path)}
	}
	if err := writePID(f, os.Getpid()); err != nil {
		f.Close()
		return nil, fmt.Errorf("write the pid into %s: %w", path, err)
	}
	return &Held{f: f}, nil
}

// LockWait takes dir's lock like Lock, but while another process holds
// it, it tries again every poll until it gets it or ctx ends (then it
// returns ctx's error). busy, if not nil, is called once with the holder's
// error when the first try finds the lock held. A standby JobManager waits
// here for the leader's data dir.
func LockWait(ctx context.Context, dir string, poll time.Duration, busy func(*InUseError)) (*Held, error) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for first := true; ; first = false {
		h, err := Lock(dir)
		var inUse *InUseError
		if !errors.As(err, &inUse) {
			return h, err
		}
		if first && busy != nil {
			busy(inUse)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Release drops the lock. The lock file stays (removing it would race with
// a process that just opened it).
func (h *Held) Release() error {
	if h == nil || h.f == nil {
		return nil
	}
	err := h.f.Close() // closing the descriptor releases the flock
	h.f = nil
	return err
}

// writePID overwrites the file's start, then cuts what an older, longer pid
// left: a reader never sees an empty file, only a stray tail line.
func writePID(f *os.File, pid int) error {
	b := []byte(strconv.Itoa(pid) + "\n")
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Truncate(int64(len(b)))
}

// readPID is the pid on the lock file's first line, 0 if it names none.
func readPID(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
