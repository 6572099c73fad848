package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// ErrNotReady is matched by Ready's error.
var ErrNotReady = errors.New("jobmanager not ready")

// Ready is nil while the JobManager can persist jobs: a probe file written,
// synced and removed in the job store's directory. It holds no lock (the
// store's directory never changes) and returns early when ctx ends; a probe
// stuck on a hung disk finishes in the background.
func (jm *JobManager) Ready(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- jm.store.Probe() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: job store %s is not writable (check the disk and the permissions of --data-dir): %w", ErrNotReady, jm.store, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: job store %s did not answer a write probe: %w", ErrNotReady, jm.store, ctx.Err())
	}
}

// Probe writes, syncs and removes a small file in the store's directory.
// Its name does not end in .pb, so LoadAll never reads one left by a crash.
func (s *store) Probe() error {
	f, err := os.CreateTemp(s.dir, ".ready-*.probe")
	if err != nil {
		return err
	}
	name := f.Name()
	_, err = f.WriteString("ok\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	return err
}
