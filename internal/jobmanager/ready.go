package jobmanager

import (
	"context"
	"errors"
	"fmt"
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
