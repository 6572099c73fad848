package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/flowrt/flow/internal/jobmanager"
	"github.com/flowrt/flow/internal/taskmanager"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/jobspec"
)

// common holds the flags both daemons have.
type common struct {
	rpcAddress, httpAddress, dataDir, config, logFormat, logLevel string
}

func (c *common) register(cmd *cobra.Command, rpcDefault, httpDefault, dataDefault string) {
	f := cmd.Flags()
	f.StringVar(&c.rpcAddress, "rpc-address", rpcDefault, "host:port for gRPC (port 0 picks a free port and logs it)")
	f.StringVar(&c.httpAddress, "http-address", httpDefault, "host:port serving /metrics and /healthz (port 0 picks a free port; empty disables)")
	f.StringVar(&c.dataDir, "data-dir", dataDefault, "directory for the daemon's persistent data")
	f.StringVar(&c.config, "config", "", "YAML file of flag values (keys are flag names); flags and FLOW_* variables override it")
	f.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// prepare applies config layering and returns the logger.
func (c *common) prepare(cmd *cobra.Command) error {
	cmd.SilenceUsage = true
	return ApplyConfig(cmd.Flags(), c.config, os.Getenv)
}

// JobManagerCommand is the jobmanager binary. registry lists the operator
// types jobs may use (the stock binary passes api.Default with the built-ins).
func JobManagerCommand(registry *api.Registry) *cobra.Command {
	var c common
	var heartbeatTimeout, slotTimeout time.Duration
	var checkpointStorage, savepointDir string
	cmd := &cobra.Command{
		Use:   "jobmanager",
		Short: "Run a Flow JobManager: the cluster's coordinator",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.prepare(cmd); err != nil {
				return err
			}
			log, err := NewLogger(os.Stderr, c.logFormat, c.logLevel)
			if err != nil {
				return err
			}
			reg := NewRegistry()
			jm, err := jobmanager.New(jobmanager.Options{
				DataDir: c.dataDir, HeartbeatTimeout: heartbeatTimeout, SlotTimeout: slotTimeout,
				CheckpointStorage: checkpointStorage, SavepointDir: savepointDir,
				Registry: registry, Logger: log, Metrics: reg,
			})
			if err != nil {
				return err
			}
			defer jm.Close()
			return serve(cmd.Context(), log, c, reg, jm.Register, func(ctx context.Context, rpc net.Addr) error {
				log.Info("jobmanager started", "id", jm.ID(), "data_dir", c.dataDir)
				jm.Run(ctx)
				return nil
			})
		},
	}
	c.register(cmd, "127.0.0.1:6123", "127.0.0.1:8081", filepath.Join("flow-data", "jobmanager"))
	cmd.Flags().DurationVar(&heartbeatTimeout, "heartbeat-timeout", 10*time.Second, "mark a TaskManager lost after this long without a heartbeat")
	cmd.Flags().DurationVar(&slotTimeout, "slot-timeout", 60*time.Second, "fail a job that cannot get enough slots for this long")
	cmd.Flags().StringVar(&checkpointStorage, "checkpoint-storage", "", "checkpoint storage URL for jobs that name none (file://, s3://, gs://, azblob://); default file://<data-dir>/checkpoints")
	cmd.Flags().StringVar(&savepointDir, "savepoint-dir", "", "directory URL for savepoints when a request names none; default file://<data-dir>/savepoints")
	return cmd
}

// TaskManagerCommand is the taskmanager binary.
func TaskManagerCommand(registry *api.Registry) *cobra.Command {
	var c common
	var jmAddr, id, advertise, stateMemory string
	var slots int
	cmd := &cobra.Command{
		Use:   "taskmanager",
		Short: "Run a Flow TaskManager: a worker that offers slots and runs tasks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.prepare(cmd); err != nil {
				return err
			}
			log, err := NewLogger(os.Stderr, c.logFormat, c.logLevel)
			if err != nil {
				return err
			}
			if slots < 1 {
				return fmt.Errorf("--slots %d: offer at least 1 slot", slots)
			}
			stateBytes, err := jobspec.ParseSize(stateMemory)
			if err != nil {
				return fmt.Errorf("--state-memory: %w", err)
			}
			reg := NewRegistry()
			tm, err := taskmanager.New(taskmanager.Options{
				ID: id, JobManager: jmAddr, Slots: slots, DataDir: c.dataDir, StateMemory: stateBytes,
				Registry: registry, Logger: log, Metrics: reg,
			})
			if err != nil {
				return err
			}
			return serve(cmd.Context(), log, c, reg, tm.Register, func(ctx context.Context, rpc net.Addr) error {
				addr := rpc.String()
				if advertise != "" {
					_, port, _ := net.SplitHostPort(addr)
					addr = net.JoinHostPort(advertise, port)
				}
				tm.SetAddress(addr)
				log.Info("taskmanager started", "id", tm.ID(), "advertised_address", addr, "jobmanager", jmAddr, "slots", slots)
				return tm.Run(ctx)
			})
		},
	}
	c.register(cmd, "127.0.0.1:0", "127.0.0.1:0", filepath.Join("flow-data", "taskmanager"))
	f := cmd.Flags()
	f.StringVar(&jmAddr, "jobmanager", "localhost:6123", "the JobManager's RPC address")
	f.IntVar(&slots, "slots", 4, "number of task slots to offer")
	f.StringVar(&id, "id", "", "TaskManager id (default: tm-<hostname>-<random>)")
	f.StringVar(&stateMemory, "state-memory", "512MiB", "memory budget of the Pebble state backends (one shared block cache), e.g. 512MiB or 2GiB")
	f.StringVar(&advertise, "advertise-host", "", "host other processes reach this TaskManager at (default: the --rpc-address host)")
	return cmd
}

// serve runs the gRPC server, the HTTP endpoint and the daemon's main loop
// until SIGINT/SIGTERM or until run returns, then stops all three.
func serve(parent context.Context, log *slog.Logger, c common, reg *prometheus.Registry,
	register func(*grpc.Server), run func(ctx context.Context, rpc net.Addr) error) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	rpcL, err := Listen(c.rpcAddress, "rpc-address")
	if err != nil {
		return err
	}
	var httpL net.Listener
	if c.httpAddress != "" {
		if httpL, err = Listen(c.httpAddress, "http-address"); err != nil {
			rpcL.Close()
			return err
		}
	}
	srv := grpc.NewServer()
	register(srv)
	attrs := []any{"rpc_address", rpcL.Addr().String()}
	if httpL != nil {
		attrs = append(attrs, "http_address", httpL.Addr().String())
	}
	log.Info("listening", attrs...)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(rpcL); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("rpc server: %w", err)
			cancel()
		}
	}()
	if httpL != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := HTTP(ctx, httpL, reg, func() error { return nil }); err != nil {
				errc <- fmt.Errorf("http server: %w", err)
				cancel()
			}
		}()
	}
	runErr := run(ctx, rpcL.Addr())
	cancel()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		srv.Stop()
		<-stopped
	}
	wg.Wait()
	close(errc)
	if runErr != nil {
		return runErr
	}
	return <-errc
}
