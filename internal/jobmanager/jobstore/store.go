package jobstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// Store keeps the JobManager's job records: one per job, the job's
// details (graph, status, history). The JobManager writes them from one
// background goroutine, never under its lock, so a slow store delays only
// persistence. The default is a directory of files (Options.DataDir/jobs);
// HA replaces it (e.g. by etcd).
type Store interface {
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

// files keeps one file per job under dir/jobs: the job's details (graph,
// status, history) as a binary JobDetails message. Writes go to a temporary
// file that is synced and renamed over the old one, so a crash leaves either
// the old or the new version.
type files struct {
	dir string
}

var _ Store = (*files)(nil)

func (s *files) String() string { return s.dir }

// Open opens (creating it) the file store under dataDir/jobs.
func Open(dataDir string) (Store, error) {
	dir := filepath.Join(dataDir, "jobs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create job store %s: %w", dir, err)
	}
	return &files{dir: dir}, nil
}

func (s *files) path(id string) string { return filepath.Join(s.dir, id+".pb") }

func (s *files) Save(d *clusterv1.JobDetails) error {
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
func (s *files) LoadAll() ([]*clusterv1.JobDetails, []error) {
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

// Probe writes, syncs and removes a small file in the store's directory.
// Its name does not end in .pb, so LoadAll never reads one left by a crash.
func (s *files) Probe() error {
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
