package jobstore

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func record(id string, st clusterv1.JobStatus) *clusterv1.JobDetails {
	return &clusterv1.JobDetails{Summary: &clusterv1.JobSummary{JobId: id, Status: st}}
}

// Records survive a reopen; a corrupt one is reported by name and the
// others still load.
func TestFilesRoundTripAndCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*clusterv1.JobDetails{record("a", clusterv1.JobStatus_JOB_STATUS_CREATED), record("b", clusterv1.JobStatus_JOB_STATUS_RUNNING),
		record("a", clusterv1.JobStatus_JOB_STATUS_FINISHED)} {
		if err := s.Save(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "jobs", "c.pb"), []byte("\xff\xff not a record"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, errs := again.LoadAll()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "c.pb is corrupt") {
		t.Fatalf("errors %v, want the corrupt c.pb named", errs)
	}
	status := map[string]clusterv1.JobStatus{}
	for _, d := range got {
		status[d.GetSummary().GetJobId()] = d.GetSummary().GetStatus()
	}
	if len(got) != 2 || status["a"] != clusterv1.JobStatus_JOB_STATUS_FINISHED || status["b"] != clusterv1.JobStatus_JOB_STATUS_RUNNING {
		t.Fatalf("loaded %v", status)
	}
	if err := again.Probe(); err != nil {
		t.Fatal(err)
	}
}

// countingStore counts saves per job and keeps the last.
type countingStore struct {
	mu    sync.Mutex
	saves map[string]int
	last  map[string]clusterv1.JobStatus
	gate  chan struct{} // when set, each Save waits for it
}

func (s *countingStore) Save(d *clusterv1.JobDetails) error {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saves[d.GetSummary().GetJobId()]++
	s.last[d.GetSummary().GetJobId()] = d.GetSummary().GetStatus()
	return nil
}
func (s *countingStore) LoadAll() ([]*clusterv1.JobDetails, []error) { return nil, nil }
func (s *countingStore) Probe() error                                { return nil }
func (s *countingStore) String() string                              { return "counting" }

// Records marked while a write hangs coalesce: the newest of each job is
// written once, and Close writes what is still pending.
func TestWriterCoalescesAndFlushesOnClose(t *testing.T) {
	st := &countingStore{saves: map[string]int{}, last: map[string]clusterv1.JobStatus{}, gate: make(chan struct{})}
	w := NewWriter(st, slog.New(slog.DiscardHandler))
	go w.Run()
	w.Mark(record("a", clusterv1.JobStatus_JOB_STATUS_CREATED))
	st.gate <- struct{}{} // the first write of a may start and finish
	for _, s := range []clusterv1.JobStatus{clusterv1.JobStatus_JOB_STATUS_RUNNING, clusterv1.JobStatus_JOB_STATUS_FAILING, clusterv1.JobStatus_JOB_STATUS_FAILED} {
		w.Mark(record("a", s))
	}
	close(st.gate)
	w.Close()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.last["a"] != clusterv1.JobStatus_JOB_STATUS_FAILED {
		t.Fatalf("last record of a: %v, want FAILED", st.last["a"])
	}
	if st.saves["a"] > 3 {
		t.Fatalf("%d writes for 4 marks with a write in between, want them coalesced", st.saves["a"])
	}
}
