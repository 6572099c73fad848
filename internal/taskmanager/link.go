package taskmanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/status"

	"github.com/flowrt/flow/internal/fencing"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// This file holds the TaskManager's link to its JobManager: registration
// (trying each JobManager of the list in turn), heartbeats and readiness.

// Retrying the JobManager. gRPC's own reconnection backoff grows to 120 s
// by default, so a TaskManager whose JobManager was away for a minute took
// 15 s or more to notice it was back; both backoffs are capped instead.
const (
	// firstRetryDelay is the wait before the first retry.
	firstRetryDelay = 100 * time.Millisecond
	// defaultHeartbeatInterval is assumed until a JobManager names its
	// own (the JobManager's default: a fifth of its 10 s timeout).
	defaultHeartbeatInterval = 2 * time.Second
	// maxConnectBackoff caps the wait between gRPC's attempts to connect
	// (a jitter of 20% is added): below any sensible heartbeat interval.
	maxConnectBackoff = 500 * time.Millisecond
	// connectTimeout bounds one attempt to connect.
	connectTimeout = 5 * time.Second
)

// retryDelay is the wait before retry number attempt (0 for the first) to
// register with the JobManager: doubling from firstRetryDelay, capped at
// the JobManager's heartbeat interval (defaultHeartbeatInterval while
// unknown), so a TaskManager registers again within about a heartbeat
// interval of its JobManager's return, however long it was away.
func retryDelay(attempt int, heartbeatInterval time.Duration) time.Duration {
	if heartbeatInterval <= 0 {
		heartbeatInterval = defaultHeartbeatInterval
	}
	d := firstRetryDelay
	for i := 0; i < attempt && d < heartbeatInterval; i++ {
		d *= 2
	}
	return min(d, heartbeatInterval)
}

// connectParams keep gRPC's reconnection to the JobManager at most
// maxConnectBackoff (+20%) apart.
var connectParams = grpc.WithConnectParams(grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: firstRetryDelay, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxConnectBackoff},
	MinConnectTimeout: connectTimeout,
})

// Ready is nil while the TaskManager is registered with its JobManager
// and its last heartbeat was answered within the JobManager's heartbeat
// timeout; else an error (ErrNotReady) saying which and why.
func (tm *TaskManager) Ready() error {
	tm.mu.Lock()
	l, addr := tm.link, tm.endpoints[tm.cur].addr
	tm.mu.Unlock()
	why := l.lastErr
	if why == "" {
		why = "registering"
	}
	if !l.registered {
		return fmt.Errorf("%w: not registered with the JobManager at %s (%s)", ErrNotReady, addr, why)
	}
	if since := time.Since(l.lastOK); since > l.timeout {
		return fmt.Errorf("%w: no heartbeat answered by the JobManager at %s for %s (%s)", ErrNotReady, addr, since.Round(time.Millisecond), why)
	}
	return nil
}

// setLink records the outcome of a registration or heartbeat: ok with the
// JobManager's heartbeat timeout, else the reason.
func (tm *TaskManager) setLink(registered bool, timeout time.Duration, err error) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.link.registered = registered
	if err != nil {
		tm.link.lastErr = status.Convert(err).Message()
		return
	}
	tm.link.lastOK, tm.link.timeout, tm.link.lastErr = time.Now(), timeout, ""
}

// Run registers with the JobManager and heartbeats until ctx ends; it
// re-registers whenever the JobManager forgets it (e.g. after a restart).
// On exit it cancels every task, waits for them, and deregisters.
func (tm *TaskManager) Run(ctx context.Context) error {
	defer tm.shutdown()
	var interval time.Duration // the JobManager's heartbeat interval, once known
	for attempt := 0; ; attempt++ {
		ep := tm.endpoint()
		resp, err := tm.register(ctx, ep)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			tm.setLink(false, 0, err)
			if attempt%20 == 0 {
				tm.log.Warn("cannot register with the JobManager; retrying", "jobmanager", ep.addr, "err", status.Convert(err).Message())
			}
			// With standbys, the next try goes to the next JobManager at
			// once; a pass over all of them waits as one did.
			tm.mu.Lock()
			tm.cur = (tm.cur + 1) % len(tm.endpoints)
			next := tm.cur
			tm.mu.Unlock()
			if next != 0 {
				continue
			}
			if !sleep(ctx, retryDelay(attempt, interval)) {
				return nil
			}
			continue
		}
		attempt = -1
		var timeout time.Duration
		interval, timeout = heartbeatTimes(resp)
		tm.setLink(true, timeout, nil)
		tm.mu.Lock()
		tm.jobManager = fencing.Token{ID: resp.GetJobManagerId(), Epoch: resp.GetLeaderEpoch()}
		tm.leaderEpoch = max(tm.leaderEpoch, resp.GetLeaderEpoch())
		tm.mu.Unlock()
		tm.registered.Set(1)
		tm.log.Info("registered with the JobManager", "jobmanager", ep.addr, "jobmanager_id", resp.GetJobManagerId(), "leader_epoch", resp.GetLeaderEpoch(), "slots", tm.opts.Slots)
		tm.heartbeatLoop(ctx, ep, interval, timeout)
		tm.registered.Set(0)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// heartbeatTimes are the heartbeat interval and timeout a registration
// answer names (defaults for an answer that names none).
func heartbeatTimes(reg *clusterv1.RegisterTaskManagerResponse) (interval, timeout time.Duration) {
	interval = time.Duration(reg.GetHeartbeatIntervalMs()) * time.Millisecond
	if interval <= 0 {
		interval = defaultHeartbeatInterval
	}
	timeout = time.Duration(reg.GetHeartbeatTimeoutMs()) * time.Millisecond
	if timeout <= 0 {
		timeout = 5 * interval
	}
	return interval, timeout
}

func (tm *TaskManager) register(ctx context.Context, ep *endpoint) (*clusterv1.RegisterTaskManagerResponse, error) {
	tm.mu.Lock()
	tm.jobManager.ID = "" // registering: the new JobManager's id is not known yet
	req := &clusterv1.RegisterTaskManagerRequest{
		TaskManagerId: tm.opts.ID, Address: tm.address, Slots: int32(tm.opts.Slots),
		HttpAddress: tm.opts.HTTPAddress, RunningTasks: tm.runningLocked(),
	}
	tm.mu.Unlock()
	if req.Address == "" {
		return nil, errors.New("taskmanager: SetAddress was not called")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := ep.rm.RegisterTaskManager(cctx, req)
	if err != nil {
		return nil, err
	}
	tm.mu.Lock()
	highest := tm.leaderEpoch
	tm.mu.Unlock()
	if resp.GetLeaderEpoch() < highest {
		// A deposed leader still running: register with the new one.
		return nil, fmt.Errorf("the JobManager %s at %s has leader epoch %d, older than epoch %d this TaskManager follows", resp.GetJobManagerId(), ep.addr, resp.GetLeaderEpoch(), highest)
	}
	return resp, nil
}

// heartbeatLoop returns when ctx ends, when the JobManager asks for
// re-registration, or when no heartbeat succeeded for the JobManager's
// heartbeat timeout.
func (tm *TaskManager) heartbeatLoop(ctx context.Context, ep *endpoint, interval, timeout time.Duration) {
	lastOK := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tm.mu.Lock()
		req := &clusterv1.HeartbeatRequest{TaskManagerId: tm.opts.ID, RunningTasks: tm.runningLocked(), TaskSamples: tm.samplesLocked()}
		tm.mu.Unlock()
		// A slow answer is still an answer: a call may take until the
		// heartbeat timeout runs out (a loaded JobManager answers late, but
		// it did hear the heartbeat and keeps the TaskManager alive).
		resp, next, moved, err := tm.callHeartbeat(ctx, ep, req, interval, max(interval, time.Until(lastOK.Add(timeout))))
		if moved {
			tm.log.Warn("the JobManager does not answer and another one does: registering with it", "jobmanager", ep.addr, "next", tm.endpoints[next].addr)
			tm.mu.Lock()
			tm.cur = next
			tm.mu.Unlock()
			return
		}
		if err != nil {
			lost := time.Since(lastOK) > timeout
			tm.setLink(!lost, timeout, err)
			if lost {
				tm.log.Warn("lost contact with the JobManager; registering again", "jobmanager", ep.addr, "err", status.Convert(err).Message())
				return
			}
			continue
		}
		lastOK = time.Now()
		if resp.GetReregister() {
			tm.setLink(false, timeout, errors.New("the JobManager asked to register again"))
			tm.log.Info("the JobManager asked us to register again")
			return
		}
		tm.setLink(true, timeout, nil)
		for _, id := range resp.GetCancelTasks() {
			tm.cancelTask(id)
		}
	}
}

// callHeartbeat sends req to ep, waiting at most d. With standbys, a call
// that fails, or is still unanswered after interval (a leader whose host
// vanished may never refuse the connection, it just stays silent until
// d), looks for another JobManager that answers: if one does, the call is
// given up and moved reports its index. A slow leader's late answer still
// counts otherwise.
func (tm *TaskManager) callHeartbeat(ctx context.Context, ep *endpoint, req *clusterv1.HeartbeatRequest, interval, d time.Duration) (
	resp *clusterv1.HeartbeatResponse, next int, moved bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if len(tm.endpoints) == 1 {
		resp, err = ep.hb.Heartbeat(cctx, req)
		return resp, 0, false, err
	}
	type answer struct {
		resp *clusterv1.HeartbeatResponse
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		r, err := ep.hb.Heartbeat(cctx, req)
		done <- answer{r, err}
	}()
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case a := <-done:
			if a.err != nil {
				if i, ok := tm.otherLeader(ctx, ep, interval); ok {
					return nil, i, true, nil
				}
			}
			return a.resp, 0, false, a.err
		case <-t.C:
			if i, ok := tm.otherLeader(ctx, ep, interval); ok {
				cancel()
				<-done // the call ends with its context
				return nil, i, true, nil
			}
			t.Reset(interval)
		}
	}
}

// otherLeader looks, after a failed or silent heartbeat to ep, for another
// of the JobManagers that answers: standbys do not listen for RPC, so one that
// answers leads now (the old leader died and a standby took over). It
// returns that endpoint's index; the TaskManager then registers there at
// once instead of waiting out the heartbeat timeout.
func (tm *TaskManager) otherLeader(ctx context.Context, ep *endpoint, wait time.Duration) (int, bool) {
	req := &clusterv1.HeartbeatRequest{TaskManagerId: tm.opts.ID}
	for i, other := range tm.endpoints {
		if other == ep {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, wait)
		_, err := other.hb.Heartbeat(cctx, req)
		cancel()
		if err == nil {
			return i, true
		}
	}
	return 0, false
}

// samplesLocked reads every running task's sample (atomic loads: the tasks
