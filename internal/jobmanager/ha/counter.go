package ha

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// CheckpointIDCounter keeps, per job, the highest checkpoint id ever
// issued. The job master records every id before its trigger leaves the
// JobManager, and a job master that starts again (after a JobManager
// restart or a failover) continues above it: an id is never issued twice,
// not even the id of a checkpoint that failed or was in flight, whose
// files and acknowledgements may still be around.
//
// An id is an int64 > 0; 0 means none was issued. Implementations must be
// safe for concurrent use and durable when a method returns: an etcd
// implementation would keep one key per job and update it with a
// compare-and-swap transaction (guarded by the leader's lease).
type CheckpointIDCounter interface {
	// GetAndIncrement issues the next id of job (the highest one plus
	// one), records it and returns it.
	GetAndIncrement(ctx context.Context, job string) (int64, error)
	// Get returns the highest id issued for job, 0 if none.
	Get(ctx context.Context, job string) (int64, error)
	// SetAtLeast records that ids up to n were issued for job; a lower n
	// than the one recorded changes nothing.
	SetAtLeast(ctx context.Context, job string, n int64) error
	// Remove forgets job (its checkpoints were deleted for good).
	Remove(ctx context.Context, job string) error
}

// FileCounter is the CheckpointIDCounter in files: one per job under
// <dir>/checkpoint-ids (dir is <data-dir>/ha).
type FileCounter struct {
	dir string
	mu  sync.Mutex // orders read-modify-write of the files
}

var _ CheckpointIDCounter = (*FileCounter)(nil)

// NewFileCounter returns the counter under dir (<data-dir>/ha); its
// directory is created on the first write.
func NewFileCounter(dir string) *FileCounter {
	return &FileCounter{dir: filepath.Join(dir, "checkpoint-ids")}
}

// path is the file of job, refusing ids that are no file name.
func (c *FileCounter) path(job string) (string, error) {
	if job == "" || job == "." || job == ".." || strings.ContainsAny(job, `/\`+"\x00") {
		return "", fmt.Errorf("checkpoint id counter: job id %q cannot name a file: job ids are file names (no slashes)", job)
	}
	return filepath.Join(c.dir, job), nil
}

func (c *FileCounter) getLocked(job string) (string, int64, error) {
	p, err := c.path(job)
	if err != nil {
		return "", 0, err
	}
	n, _, err := readUint(p, "checkpoint id counter", "delete it to continue above the newest checkpoint in storage, or write the highest checkpoint id issued into it")
	if err == nil && n > 1<<62 {
		err = fmt.Errorf("checkpoint id counter %s is corrupt (%d is out of range): delete it to continue above the newest checkpoint in storage", p, n)
	}
	return p, int64(n), err
}

func (c *FileCounter) setLocked(p string, n int64) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("checkpoint id counter: %w", err)
	}
	if err := writeAtomic(p, formatUint(uint64(n))); err != nil {
		return fmt.Errorf("checkpoint id counter %s: %w", p, err)
	}
	return nil
}

// Get returns the highest id issued for job, 0 if none.
func (c *FileCounter) Get(_ context.Context, job string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, n, err := c.getLocked(job)
	return n, err
}

// GetAndIncrement issues, records and returns the next id of job.
func (c *FileCounter) GetAndIncrement(_ context.Context, job string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, n, err := c.getLocked(job)
	if err != nil {
		return 0, err
	}
	if err := c.setLocked(p, n+1); err != nil {
		return 0, err
	}
	return n + 1, nil
}

// SetAtLeast records that ids up to n were issued for job.
func (c *FileCounter) SetAtLeast(_ context.Context, job string, n int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, cur, err := c.getLocked(job)
	if err != nil {
		return err
	}
	if n <= cur {
		return nil
	}
	return c.setLocked(p, n)
}

// Remove deletes job's file.
func (c *FileCounter) Remove(_ context.Context, job string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.path(job)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("checkpoint id counter: %w", err)
	}
	return nil
}
