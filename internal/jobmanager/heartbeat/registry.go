package heartbeat

import (
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flowrt/flow/internal/jobmanager/scheduler"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// maxHeartbeatRate bounds the heartbeats per second the JobManager asks of
// its TaskManagers together: in a large cluster each one heartbeats less
// often (and its TTL grows with it), as nomad scales its node TTLs.
const maxHeartbeatRate = 50

// Registry tracks the TaskManagers: registration, a TTL timer per
// TaskManager that a heartbeat resets (when it fires the TaskManager is
// lost), slot accounting and the connection to each. It has its own lock,
// so a heartbeat never waits for the JobManager's lock or for job work.
//
// Lock order: the registry never calls out while it holds r.mu (onLost
// runs after it is released).
type Registry struct {
	interval, ttl time.Duration // configured heartbeat interval and timeout
	// onLost is told, without r.mu, that a TaskManager left service (lost,
	// unreachable or deregistered): its subtasks fail.
	onLost func(id, reason string)

	mu     sync.Mutex
	tms    map[string]*taskManager
	closed bool
}

type taskManager struct {
	info   *clusterv1.TaskManagerInfo
	conn   *grpc.ClientConn
	client clusterv1.TaskExecutorServiceClient
	timer  *time.Timer
	ttl    time.Duration
	// used counts slots held by running jobs.
	used int
	// running is what the TaskManager last reported running (fresh until
	// the JobManager compared it with what it wants); unwanted is what the
	// next heartbeat answer asks it to cancel.
	running  []*clusterv1.TaskID
	fresh    bool
	unwanted []*clusterv1.TaskID
}

func (tm *taskManager) active() bool {
	return tm.info.GetState() == clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE
}

func (tm *taskManager) freeSlots() int {
	if !tm.active() {
		return 0
	}
	return int(tm.info.GetSlots()) - tm.used
}

// Ref is what job code needs of a TaskManager: where it is and how to
// call it.
type Ref struct {
	ID, Address string
	Client      clusterv1.TaskExecutorServiceClient
}

// New returns a registry asking TaskManagers for heartbeats every
// interval, losing them after ttl without one (both scaled with the
// cluster's size). onLost is told, without the registry's lock, that a
// TaskManager left service (lost, unreachable or deregistered).
func New(interval, ttl time.Duration, onLost func(id, reason string)) *Registry {
	return &Registry{interval: interval, ttl: ttl, onLost: onLost, tms: map[string]*taskManager{}}
}

// scaledLocked returns the heartbeat interval and TTL for a cluster of n
// TaskManagers.
func (r *Registry) scaledLocked(n int) (time.Duration, time.Duration) {
	interval := max(r.interval, time.Duration(n)*time.Second/maxHeartbeatRate)
	if interval == r.interval || r.interval <= 0 {
		return interval, r.ttl
	}
	// Keep the configured number of heartbeats per TTL.
	return interval, max(r.ttl, time.Duration(float64(interval)*float64(r.ttl)/float64(r.interval)))
}

// Register adds or replaces a TaskManager and arms its TTL timer.
func (r *Registry) Register(req *clusterv1.RegisterTaskManagerRequest, conn *grpc.ClientConn, now time.Time) (interval, ttl time.Duration, ok bool) {
	id := req.GetTaskManagerId()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, 0, false
	}
	tm := &taskManager{
		info: &clusterv1.TaskManagerInfo{
			Id: id, Address: req.GetAddress(), Slots: req.GetSlots(), HttpAddress: req.GetHttpAddress(),
			State: clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE, RegisteredTimeMs: now.UnixMilli(), LastHeartbeatMs: now.UnixMilli(),
		},
		conn: conn, client: clusterv1.NewTaskExecutorServiceClient(conn),
	}
	if old := r.tms[id]; old != nil {
		if old.timer != nil {
			old.timer.Stop()
		}
		if old.conn != nil {
			old.conn.Close()
		}
		if old.active() {
			// A live TaskManager that lost contact with us: keep its slot
			// accounting (what it runs for us is unchanged).
			tm.used = old.used
		}
	}
	n := len(r.tms)
	if r.tms[id] == nil {
		n++
	}
	interval, tm.ttl = r.scaledLocked(n)
	tm.timer = time.AfterFunc(tm.ttl, func() { r.expire(id, tm) })
	r.tms[id] = tm
	return interval, tm.ttl, true
}

// Heartbeat resets the TaskManager's TTL and records what it runs. It
// returns the tasks to cancel (from its previous report) and whether the
// TaskManager must register again (it is unknown or was taken out of
// service).
func (r *Registry) Heartbeat(id string, running []*clusterv1.TaskID, now time.Time) (cancel []*clusterv1.TaskID, reregister bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tm := r.tms[id]
	if tm == nil || !tm.active() {
		return nil, true
	}
	tm.timer.Reset(tm.ttl)
	tm.info.LastHeartbeatMs = now.UnixMilli()
	cancel, tm.unwanted = tm.unwanted, nil
	tm.running, tm.fresh = running, true
	return cancel, false
}

// expire takes a TaskManager whose TTL ran out out of service.
func (r *Registry) expire(id string, tm *taskManager) {
	r.mu.Lock()
	if r.closed || r.tms[id] != tm || !tm.active() {
		r.mu.Unlock()
		return
	}
	reason := "TaskManager " + id + " (" + tm.info.GetAddress() + ") lost: no heartbeat for " + tm.ttl.String()
	r.retireLocked(tm, clusterv1.TaskManagerState_TASK_MANAGER_STATE_LOST)
	r.mu.Unlock()
	r.onLost(id, reason)
}

// Retire takes an active TaskManager out of service (state LOST or
// DEREGISTERED) and reports whether it was active; onLost is then told.
func (r *Registry) Retire(id string, st clusterv1.TaskManagerState, reason string) bool {
	r.mu.Lock()
	tm := r.tms[id]
	if r.closed || tm == nil || !tm.active() {
		r.mu.Unlock()
		return false
	}
	r.retireLocked(tm, st)
	r.mu.Unlock()
	r.onLost(id, reason)
	return true
}

func (r *Registry) retireLocked(tm *taskManager, st clusterv1.TaskManagerState) {
	if tm.timer != nil {
		tm.timer.Stop()
	}
	tm.info.State = st
	tm.used = 0
	tm.running, tm.fresh, tm.unwanted = nil, false, nil
	if tm.conn != nil {
		tm.conn.Close()
		tm.conn, tm.client = nil, nil
	}
}

// Lookup returns an active TaskManager's address and client.
func (r *Registry) Lookup(id string) (Ref, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tm := r.tms[id]
	if tm == nil || tm.client == nil {
		return Ref{}, false
	}
	return Ref{ID: id, Address: tm.info.GetAddress(), Client: tm.client}, true
}

// Address is a TaskManager's address, also after it left ("" if unknown).
func (r *Registry) Address(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tm := r.tms[id]; tm != nil {
		return tm.info.GetAddress()
	}
	return ""
}

// Allocate picks need free slots (scheduler.Allocate) and takes them, in one
// step under the registry's lock.
func (r *Registry) Allocate(need int) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var offers []scheduler.Offer
	for _, tm := range r.tms {
		if f := tm.freeSlots(); f > 0 {
			offers = append(offers, scheduler.Offer{TaskManager: tm.info.GetId(), Free: f})
		}
	}
	slots, err := scheduler.Allocate(need, offers)
	if err != nil {
		return nil, err
	}
	for _, id := range slots {
		r.tms[id].used++
	}
	return slots, nil
}

// Release gives back slots held by a job, one per entry.

func (r *Registry) Release(slots []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range slots {
		if tm := r.tms[id]; tm != nil && tm.used > 0 {
			tm.used--
		}
	}
}

// List returns every TaskManager known, by id, with its free slots.
func (r *Registry) List() []*clusterv1.TaskManagerInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*clusterv1.TaskManagerInfo, 0, len(r.tms))
	for _, tm := range r.tms {
		info := proto.Clone(tm.info).(*clusterv1.TaskManagerInfo)
		info.FreeSlots = int32(tm.freeSlots())
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}

// Reports returns, and marks seen, the running-task reports that arrived
// since the last call, by TaskManager.
func (r *Registry) Reports() map[string][]*clusterv1.TaskID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out map[string][]*clusterv1.TaskID
	for id, tm := range r.tms {
		if tm.fresh {
			if out == nil {
				out = map[string][]*clusterv1.TaskID{}
			}
			out[id] = tm.running
			tm.fresh = false
		}
	}
	return out
}

// SetUnwanted records the tasks the next heartbeat answer of id cancels.
func (r *Registry) SetUnwanted(id string, tasks []*clusterv1.TaskID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tm := r.tms[id]; tm != nil && tm.active() {
		tm.unwanted = append(tm.unwanted, tasks...)
	}
}

// Close stops every timer and closes every connection.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, tm := range r.tms {
		if tm.timer != nil {
			tm.timer.Stop()
		}
		if tm.conn != nil {
			tm.conn.Close()
			tm.conn = nil
		}
	}
}

// Stats counts TaskManagers by state and the slots of the active ones.
func (r *Registry) Stats() (byState map[string]float64, free, used float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byState = map[string]float64{}
	for _, tm := range r.tms {
		byState[tm.info.GetState().String()]++
		if tm.active() {
			free += float64(tm.freeSlots())
			used += float64(tm.used)
		}
	}
	return byState, free, used
}
