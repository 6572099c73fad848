package jobmanager_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/internal/jobmanager"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// slowStore is an in-memory JobStore whose writes, once slow is set, take
// two seconds each (a hung or overloaded disk).
type slowStore struct {
	slow    atomic.Bool
	writing atomic.Int32
	mu      sync.Mutex
	recs    map[string]*clusterv1.JobDetails
}

func (s *slowStore) Save(d *clusterv1.JobDetails) error {
	if s.slow.Load() {
		s.writing.Add(1)
		time.Sleep(2 * time.Second) // the fault being modelled: a write that hangs
		s.writing.Add(-1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs[d.GetSummary().GetJobId()] = proto.Clone(d).(*clusterv1.JobDetails)
	return nil
}

func (s *slowStore) LoadAll() ([]*clusterv1.JobDetails, []error) { return nil, nil }
func (s *slowStore) Probe() error                                { return nil }
func (s *slowStore) String() string                              { return "slow test store" }

// A job store that takes two seconds per write delays persistence only:
// heartbeats and ListJobs are answered meanwhile and no TaskManager is
// marked lost (before, every task state update wrote the job record under
// the lock heartbeats need).
func TestSlowJobStoreDoesNotStallTheJobManager(t *testing.T) {
	st := &slowStore{recs: map[string]*clusterv1.JobDetails{}}
	c := newCluster(t, jobmanager.Options{JobStore: st, HeartbeatTimeout: time.Second})
	c.addTaskManager("tm-a", 4, blockUntilCanceled)
	st.slow.Store(true)
	id := c.submit(graph("slow-store", 4)) // submit's own write is slow too
	waitStatus(t, c, id, clusterv1.JobStatus_JOB_STATUS_RUNNING)
	deadline := time.Now().Add(3 * time.Second) // three heartbeat timeouts
	answered := 0
	for time.Now().Before(deadline) {
		if st.writing.Load() == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// A write is hanging right now.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := c.client.ListJobs(ctx, &clusterv1.ListJobsRequest{})
		if err == nil {
			var hb *clusterv1.HeartbeatResponse
			hb, err = c.rm.Heartbeat(ctx, &clusterv1.HeartbeatRequest{TaskManagerId: "tm-a"})
			if err == nil && hb.GetReregister() {
				t.Fatal("tm-a was asked to re-register: it was marked lost while the store was slow")
			}
		}
		cancel()
		if err != nil {
			t.Fatalf("while a job store write hangs: %v", err)
		}
		answered++
		time.Sleep(50 * time.Millisecond) // the probing rate: a ListJobs and a heartbeat every 50ms
	}
	if answered == 0 {
		t.Fatal("no job store write was in progress during the test")
	}
	tms, err := c.client.ListTaskManagers(context.Background(), &clusterv1.ListTaskManagersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range tms.GetTaskManagers() {
		if tm.GetState() != clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE {
			t.Fatalf("TaskManager %s is %v", tm.GetId(), tm.GetState())
		}
	}
	st.slow.Store(false)
	if _, err := c.client.CancelJob(context.Background(), &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	c.await(id)
}
