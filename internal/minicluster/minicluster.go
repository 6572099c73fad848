// Package minicluster runs a whole Flow cluster in one process: a JobManager
// and TaskManagers with real gRPC servers on loopback ports, exactly the
// components the daemons run. `flowctl local` and end-to-end tests use it.
package minicluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/jobmanager"
	"github.com/flowrt/flow/internal/rpcerr"
	"github.com/flowrt/flow/internal/taskmanager"
	"github.com/flowrt/flow/pkg/api"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// Options configure a mini cluster. Zero values take the documented defaults.
type Options struct {
	// TaskManagers to start. Default 2.
	TaskManagers int
	// Slots per TaskManager. Default 4.
	Slots int
	// DataDir holds the JobManager's job store and the TaskManagers' data.
	// Default: a temporary directory removed by Close.
	DataDir string
	// Registry of operator types. Default api.Default.
	Registry *api.Registry
	// TaskManagerRegistry, when set, is the TaskManagers' registry instead
	// of Registry (to test a cluster whose binaries disagree).
	TaskManagerRegistry *api.Registry
	Logger              *slog.Logger
	// HeartbeatTimeout and SlotTimeout as for the JobManager.
	HeartbeatTimeout time.Duration
	SlotTimeout      time.Duration
	// JobManagerMetrics receives the JobManager's metrics; nil disables them.
	JobManagerMetrics prometheus.Registerer
	// TaskManagerMetrics, when set, returns the registerer of TaskManager i
	// (one each: their metrics share names); nil disables them.
	TaskManagerMetrics func(i int) prometheus.Registerer
}

// Cluster is a running mini cluster.
type Cluster struct {
	opts    Options
	ownsDir bool
	jm      *jobmanager.JobManager
	jmSrv   *grpc.Server
	jmAddr  string
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the gRPC servers' Serve loops and the JobManager's Run
	tms     []*tmProc
}

type tmProc struct {
	tm     *taskmanager.TaskManager
	srv    *grpc.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// Start brings up the cluster and returns once every TaskManager has
// registered.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.TaskManagers <= 0 {
		opts.TaskManagers = 2
	}
	if opts.Slots <= 0 {
		opts.Slots = 4
	}
	if opts.Registry == nil {
		opts.Registry = api.Default
	}
	if opts.TaskManagerRegistry == nil {
		opts.TaskManagerRegistry = opts.Registry
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{opts: opts}
	if opts.DataDir == "" {
		dir, err := os.MkdirTemp("", "flow-minicluster-")
		if err != nil {
			return nil, fmt.Errorf("minicluster: %w", err)
		}
		c.opts.DataDir, c.ownsDir = dir, true
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel

	c.jm, err = jobmanager.New(jobmanager.Options{
		DataDir: filepath.Join(c.opts.DataDir, "jobmanager"), HeartbeatTimeout: opts.HeartbeatTimeout,
		SlotTimeout: opts.SlotTimeout, Registry: opts.Registry, Logger: opts.Logger.With("component", "jobmanager"),
		Metrics: opts.JobManagerMetrics,
	})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("minicluster: listen: %w", err)
	}
	c.jmAddr = l.Addr().String()
	c.jmSrv = grpc.NewServer(rpcerr.ServerOptions()...)
	c.jm.Register(c.jmSrv)
	c.wg.Add(2)
	go func() { defer c.wg.Done(); _ = c.jmSrv.Serve(l) }()
	go func() { defer c.wg.Done(); c.jm.Run(runCtx) }()

	for i := 0; i < opts.TaskManagers; i++ {
		if err := c.startTaskManager(i); err != nil {
			return nil, err
		}
	}
	if err := c.waitRegistered(ctx, opts.TaskManagers); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startTaskManager(i int) error {
	id := fmt.Sprintf("tm-%d", i)
	var metrics prometheus.Registerer
	if c.opts.TaskManagerMetrics != nil {
		metrics = c.opts.TaskManagerMetrics(i)
	}
	tm, err := taskmanager.New(taskmanager.Options{
		ID: id, JobManager: c.jmAddr, Slots: c.opts.Slots,
		DataDir: filepath.Join(c.opts.DataDir, id), Registry: c.opts.TaskManagerRegistry,
		Logger: c.opts.Logger.With("component", id), Metrics: metrics,
	})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("minicluster: listen: %w", err)
	}
	p := &tmProc{tm: tm, srv: grpc.NewServer(rpcerr.ServerOptions()...), done: make(chan struct{})}
	tm.Register(p.srv)
	tm.SetAddress(l.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	c.tms = append(c.tms, p)
	c.wg.Add(1)
	go func() { defer c.wg.Done(); _ = p.srv.Serve(l) }()
	go func() {
		defer close(p.done)
		_ = tm.Run(ctx)
	}()
	return nil
}

func (c *Cluster) waitRegistered(ctx context.Context, n int) error {
	conn, err := grpc.NewClient(c.jmAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := clusterv1.NewJobManagerServiceClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.ListTaskManagers(ctx, &clusterv1.ListTaskManagersRequest{})
		if err == nil {
			active := 0
			for _, tm := range resp.GetTaskManagers() {
				if tm.GetState() == clusterv1.TaskManagerState_TASK_MANAGER_STATE_ACTIVE {
					active++
				}
			}
			if active >= n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("minicluster: TaskManagers did not register within 30s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StopTaskManager stops TaskManager i as if its process went away: its
// gRPC server stops at once (connections to it break), then it cancels its
// tasks and deregisters. Stopping a stopped TaskManager is a no-op.
func (c *Cluster) StopTaskManager(i int) error {
	if i < 0 || i >= len(c.tms) {
		return fmt.Errorf("minicluster: no TaskManager %d (there are %d)", i, len(c.tms))
	}
	p := c.tms[i]
	p.srv.Stop()
	p.cancel()
	<-p.done
	return nil
}

// AddTaskManager starts another TaskManager, waits until it registered and
// returns its index (its id is tm-<index>).
func (c *Cluster) AddTaskManager(ctx context.Context) (int, error) {
	i := len(c.tms)
	if err := c.startTaskManager(i); err != nil {
		return 0, err
	}
	live := 0
	for _, p := range c.tms {
		select {
		case <-p.done:
		default:
			live++
		}
	}
	return i, c.waitRegistered(ctx, live)
}

// JobManagerAddress is the JobManager's RPC address (for flowctl).
func (c *Cluster) JobManagerAddress() string { return c.jmAddr }

// DataDir is the directory holding the cluster's data.
func (c *Cluster) DataDir() string { return c.opts.DataDir }

// Close stops the TaskManagers (canceling their tasks), then the
// JobManager, and removes a temporary data dir.
func (c *Cluster) Close() error {
	for _, p := range c.tms {
		p.cancel()
	}
	for _, p := range c.tms {
		<-p.done
		p.srv.Stop()
	}
	c.tms = nil
	if c.cancel != nil {
		c.cancel()
	}
	if c.jmSrv != nil {
		c.jmSrv.Stop()
	}
	if c.jm != nil {
		c.jm.Close()
	}
	c.wg.Wait()
	if c.ownsDir {
		return os.RemoveAll(c.opts.DataDir)
	}
	return nil
}
