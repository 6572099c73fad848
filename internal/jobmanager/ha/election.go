package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/flowrt/flow/internal/datadir"
)

// LeaderElection decides which of the JobManagers sharing a data dir (or,
// with etcd, a cluster) leads. A contender campaigns and, once it leads,
// gets a Term whose epoch is higher than every earlier term's: the epoch
// is the fencing token TaskManagers compare (internal/fencing), so calls
// of a deposed leader are refused once a newer one reached them.
//
// An etcd implementation would campaign with a lease (a session) and
// take the epoch from the election key's revision; Lost would close when
// the lease expires.
type LeaderElection interface {
	// Campaign blocks until this contender leads or ctx ends (then it
	// returns ctx's error). id names the contender in Leader's answer.
	Campaign(ctx context.Context, id string) (*Term, error)
	// Leader is the leader as it published itself: its id, epoch and
	// address (ok false when no leader ever published).
	Leader() (info LeaderInfo, ok bool, err error)
}

// LeaderInfo is what a leader publishes about itself.
type LeaderInfo struct {
	ID      string `json:"id"`
	Epoch   uint64 `json:"epoch"`
	Address string `json:"address,omitempty"`
	PID     int    `json:"pid,omitempty"`
}

// Term is one leadership: it lasts until Resign, or until Lost closes (an
// implementation that can lose a lease).
type Term struct {
	// Epoch grows with every term (1 for the first).
	Epoch uint64
	// Lost closes if leadership is lost before Resign; the leader must
	// stop at once. The file election never loses a term it holds.
	Lost <-chan struct{}

	id      string
	publish func(LeaderInfo) error
	resign  func() error
}

// Publish records the address the leader serves at, for standbys and
// tools (Leader).
func (t *Term) Publish(address string) error {
	return t.publish(LeaderInfo{ID: t.id, Epoch: t.Epoch, Address: address, PID: os.Getpid()})
}

// Resign ends the term: another contender may lead.
func (t *Term) Resign() error { return t.resign() }

// FileElection is the LeaderElection of JobManagers that share a data dir
// (a local disk, or a shared volume with working flock(2)): the leader
// holds the data dir's lock (package datadir), so it is also the only
// process that writes the job store. The epoch is kept in
// <data-dir>/ha/leader-epoch and the published leader in
// <data-dir>/ha/leader (JSON).
type FileElection struct {
	dataDir string
	poll    time.Duration
	// Waiting, if set, is called once per campaign when it finds another
	// process leading (with the holder's error, naming its pid).
	Waiting func(error)
}

var _ LeaderElection = (*FileElection)(nil)

// NewFileElection returns the election over dataDir's lock; a standby
// tries to take it every poll (default 200ms).
func NewFileElection(dataDir string, poll time.Duration) *FileElection {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	return &FileElection{dataDir: dataDir, poll: poll}
}

func (e *FileElection) haDir() string { return filepath.Join(e.dataDir, "ha") }

// Campaign waits for the data dir's lock, then records the next epoch.
func (e *FileElection) Campaign(ctx context.Context, id string) (*Term, error) {
	var busy func(*datadir.InUseError)
	if e.Waiting != nil {
		busy = func(err *datadir.InUseError) { e.Waiting(err) }
	}
	held, err := datadir.LockWait(ctx, e.dataDir, e.poll, busy)
	if err != nil {
		return nil, err
	}
	return e.begin(held, id)
}

// TryCampaign leads at once or fails: while another process leads, it
// returns the data dir's in-use error (datadir.ErrInUse) naming its pid.
// A JobManager without standbys takes its data dir this way.
func (e *FileElection) TryCampaign(id string) (*Term, error) {
	held, err := datadir.Lock(e.dataDir)
	if err != nil {
		return nil, err
	}
	return e.begin(held, id)
}

// begin starts the term of the holder of the data dir's lock.
func (e *FileElection) begin(held *datadir.Held, id string) (*Term, error) {
	epoch, err := e.nextEpoch()
	if err != nil {
		held.Release()
		return nil, err
	}
	t := &Term{Epoch: epoch, Lost: make(chan struct{}), id: id}
	t.publish = func(info LeaderInfo) error {
		b, _ := json.Marshal(info)
		if err := writeAtomic(filepath.Join(e.haDir(), "leader"), append(b, '\n')); err != nil {
			return fmt.Errorf("publish the leader: %w", err)
		}
		return nil
	}
	t.resign = held.Release
	return t, nil
}

// nextEpoch increments <data-dir>/ha/leader-epoch (under the lock).
func (e *FileElection) nextEpoch() (uint64, error) {
	if err := os.MkdirAll(e.haDir(), 0o755); err != nil {
		return 0, fmt.Errorf("leader election: %w", err)
	}
	p := filepath.Join(e.haDir(), "leader-epoch")
	n, _, err := readUint(p, "leader epoch", "write a number above every epoch TaskManagers saw into it (the largest \"leader_epoch\" in their logs), or delete it if every TaskManager restarts too")
	if err != nil {
		return 0, err
	}
	if err := writeAtomic(p, formatUint(n+1)); err != nil {
		return 0, fmt.Errorf("leader epoch %s: %w", p, err)
	}
	return n + 1, nil
}

// Leader reads the published leader.
func (e *FileElection) Leader() (LeaderInfo, bool, error) {
	p := filepath.Join(e.haDir(), "leader")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return LeaderInfo{}, false, nil
	}
	if err != nil {
		return LeaderInfo{}, false, fmt.Errorf("read the leader: %w", err)
	}
	var info LeaderInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return LeaderInfo{}, false, fmt.Errorf("leader file %s is corrupt (%v): delete it; the next leader writes it again", p, err)
	}
	return info, true, nil
}
