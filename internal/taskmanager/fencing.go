package taskmanager

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"

	"github.com/flowrt/flow/internal/fencing"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// endpoint is one JobManager the TaskManager may register with: the
// leader, or a standby that leads after a failover.
type endpoint struct {
	addr string
	conn *grpc.ClientConn
	rm   clusterv1.ResourceManagerServiceClient
	// hbConn and hb carry heartbeats only: they never queue behind the
	// task state updates and checkpoint acknowledgements of a deploy
	// storm.
	hbConn *grpc.ClientConn
	hb     clusterv1.ResourceManagerServiceClient
}

func (ep *endpoint) close() {
	ep.conn.Close()
	ep.hbConn.Close()
}

// dialJobManagers makes the endpoints of list (addresses separated by
// commas).
func dialJobManagers(list string, opts []grpc.DialOption) ([]*endpoint, error) {
	var eps []*endpoint
	fail := func(err error) ([]*endpoint, error) {
		for _, ep := range eps {
			ep.close()
		}
		return nil, err
	}
	for _, addr := range strings.Split(list, ",") {
		addr = strings.TrimSpace(addr)
		if addr == "" {
			return fail(fmt.Errorf("taskmanager: --jobmanager %q names an empty address: list HOST:PORT addresses separated by commas", list))
		}
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return fail(fmt.Errorf("taskmanager: bad JobManager address %q: %w", addr, err))
		}
		hbConn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			conn.Close()
			return fail(fmt.Errorf("taskmanager: bad JobManager address %q: %w", addr, err))
		}
		eps = append(eps, &endpoint{addr: addr, conn: conn, rm: clusterv1.NewResourceManagerServiceClient(conn),
			hbConn: hbConn, hb: clusterv1.NewResourceManagerServiceClient(hbConn)})
	}
	return eps, nil
}

// endpoint is the JobManager registered with (or being tried).
func (tm *TaskManager) endpoint() *endpoint {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.endpoints[tm.cur]
}

// fenced refuses a call from a JobManager other than the one this
// TaskManager follows (internal/fencing); a call of a newer leader
// raises the epoch followed.
func (tm *TaskManager) fenced(ctx context.Context) error {
	tm.mu.Lock()
	was := tm.leaderEpoch
	epoch, err := fencing.Check(ctx, tm.jobManager, was)
	if err == nil && epoch > was {
		tm.leaderEpoch = epoch
	}
	tm.mu.Unlock()
	if epoch > was {
		tm.log.Info("a newer JobManager leads", "leader_epoch", epoch, "was", was)
	}
	return err
}

// staleAttemptLocked reports whether a deployment is of an older attempt
// of its job than one this TaskManager already runs (a late deployment of
// an attempt the JobManager has moved past).
func (tm *TaskManager) staleAttemptLocked(id *clusterv1.TaskID) (int32, bool) {
	for k := range tm.tasks {
		if k.job == id.GetJobId() && k.attempt > id.GetAttempt() {
			return k.attempt, true
		}
	}
	return 0, false
}
