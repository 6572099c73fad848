package jobmanager

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// JobStore keeps the JobManager's job records: one per job, the job's
// details (graph, status, history). The JobManager writes them from one
// background goroutine, never under its lock, so a slow store delays only
// persistence. The default is a directory of files (Options.DataDir/jobs);
// HA replaces it (e.g. by etcd).
type JobStore interface {
	// Save stores d, replacing the job's earlier record atomically.
	Save(d *clusterv1.JobDetails) error
	// LoadAll returns every stored job; a record that cannot be read is
	// reported and skipped.
	LoadAll() ([]*clusterv1.JobDetails, []error)
	// Probe reports whether the store takes writes (readiness).
	Probe() error
	// String names the store in messages.
	String() string
}

// store keeps one file per job under dir/jobs: the job's details (graph,
// status, history) as a binary JobDetails message. Writes go to a temporary
// file that is synced and renamed over the old one, so a crash leaves either
// the old or the new version.
type store struct {
	dir string
}

var _ JobStore = (*store)(nil)

func (s *store) String() string { return s.dir }

func openStore(dataDir string) (*store, error) {
	dir := filepath.Join(dataDir, "jobs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create job store %s: %w", dir, err)
	}
	return &store{dir: dir}, nil
}

func (s *store) path(id string) string { return filepath.Join(s.dir, id+".pb") }

func (s *store) Save(d *clusterv1.JobDetails) error {
	id := d.GetSummary().GetJobId()
	data, err := proto.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", id, err)
	}
	tmp, err := os.CreateTemp(s.dir, id+".*.tmp")
	if err != nil {
		return fmt.Errorf("save job %s: %w", id, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save job %s: %w", id, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save job %s: %w", id, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save job %s: %w", id, err)
	}
	if err := os.Rename(tmp.Name(), s.path(id)); err != nil {
		return fmt.Errorf("save job %s: %w", id, err)
	}
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// LoadAll reads every stored job. A file that cannot be decoded is reported
// by name and skipped, so one corrupt record does not hide the others.
func (s *store) LoadAll() ([]*clusterv1.JobDetails, []error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, []error{fmt.Errorf("read job store %s: %w", s.dir, err)}
	}
	var jobs []*clusterv1.JobDetails
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".pb") {
			continue
		}
		p := filepath.Join(s.dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read stored job %s: %w", p, err))
			continue
		}
		d := &clusterv1.JobDetails{}
		if err := proto.Unmarshal(data, d); err != nil {
			errs = append(errs, fmt.Errorf("stored job %s is corrupt (move it away to silence this): %w", p, err))
			continue
		}
		if d.GetSummary().GetJobId() == "" {
			errs = append(errs, errors.New("stored job "+p+" has no id (move it away to silence this)"))
			continue
		}
		jobs = append(jobs, d)
	}
	return jobs, errs
}
