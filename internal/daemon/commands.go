package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowrt/flow/internal/restapi"
	"github.com/flowrt/flow/internal/webui"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/flowrt/flow/internal/datadir"
	"github.com/flowrt/flow/internal/jobmanager"
	"github.com/flowrt/flow/internal/jobmanager/ha"
	"github.com/flowrt/flow/internal/rpcerr"
	"github.com/flowrt/flow/internal/taskmanager"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/jobspec"
)

// common holds the flags both daemons have.
type common struct {
	rpcAddress, httpAddress, dataDir, config, logFormat, logLevel string
	pprof                                                         bool
}

func (c *common) register(cmd *cobra.Command, rpcDefault, httpDefault, dataDefault string) {
	f := cmd.Flags()
	f.StringVar(&c.rpcAddress, "rpc-address", rpcDefault, "host:port for gRPC (port 0 picks a free port and logs it)")
	f.StringVar(&c.httpAddress, "http-address", httpDefault, "host:port serving /metrics, /livez and /readyz (port 0 picks a free port; empty disables)")
	f.StringVar(&c.dataDir, "data-dir", dataDefault, "directory for the daemon's persistent data (one daemon at a time: it is locked)")
	f.StringVar(&c.config, "config", "", "YAML file of flag values (keys are flag names); flags and FLOW_* variables override it")
	f.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&c.pprof, "pprof", false, "serve Go's profiles on /debug/pprof/ of the HTTP address (off by default: they reveal internals)")
}

// prepare applies config layering and returns the logger (on the
// command's stderr).
func (c *common) prepare(cmd *cobra.Command) (*slog.Logger, error) {
	cmd.SilenceUsage = true
	if err := ApplyConfig(cmd.Flags(), c.config, os.Getenv); err != nil {
		return nil, err
	}
	return NewLogger(cmd.ErrOrStderr(), c.logFormat, c.logLevel)
}

// listeners are a daemon's open RPC and HTTP listeners (http is nil when
// --http-address is empty).
type listeners struct {
	rpc, http net.Listener
	// api serves the other paths of the HTTP address: the JobManager's
	// REST API (/api/) and web UI (/).
	api http.Handler
	// pprof: serve /debug/pprof/ too.
	pprof bool
}

func (c *common) listen() (*listeners, error) {
	rpcL, err := Listen(c.rpcAddress, "rpc-address")
	if err != nil {
		return nil, err
	}
	ls := &listeners{rpc: rpcL, pprof: c.pprof}
	if c.httpAddress != "" {
		if ls.http, err = Listen(c.httpAddress, "http-address"); err != nil {
			rpcL.Close()
			return nil, err
		}
	}
	return ls, nil
}

func (ls *listeners) close() {
	ls.rpc.Close()
	if ls.http != nil {
		ls.http.Close()
	}
}

// advertised is addr with its host replaced by host (when set).
func advertised(addr net.Addr, host string) string {
	s := addr.String()
	if host == "" {
		return s
	}
	_, port, _ := net.SplitHostPort(s)
	return net.JoinHostPort(host, port)
}

// JobManagerCommand is the jobmanager binary. registry lists the operator
// types jobs may use (the stock binary passes api.Default with the built-ins).
func JobManagerCommand(registry *api.Registry) *cobra.Command {
	var c common
	var heartbeatTimeout, slotTimeout time.Duration
	var checkpointStorage, savepointDir, haMode, advertise string
	cmd := &cobra.Command{
		Use:   "jobmanager",
		Short: "Run a Flow JobManager: the cluster's coordinator",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := c.prepare(cmd)
			if err != nil {
				return err
			}
			// The data dir is locked before the job store is opened (a
			// second JobManager would mark the first one's running jobs
			// FAILED): holding its lock is leading.
			reg := NewRegistry()
			id := jobmanager.NewID()
			election := ha.NewFileElection(c.dataDir, 200*time.Millisecond)
			leading := prometheus.NewGauge(prometheus.GaugeOpts{Name: "flow_jobmanager_leading",
				Help: "1 while this JobManager leads, 0 while it waits as a standby."})
			reg.MustRegister(leading)
			var term *ha.Term
			switch haMode {
			case "none":
				term, err = election.TryCampaign(id)
			case "file":
				term, err = waitToLead(cmd.Context(), log, &c, election, reg, id)
			default:
				return fmt.Errorf("--high-availability %q: want none or file", haMode)
			}
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return nil // stopped while standby
				}
				return err
			}
			defer term.Resign()
			leading.Set(1)
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flow_jobmanager_leader_epoch",
				Help: "The leader epoch of this JobManager's term (it grows with every leadership)."},
				func() float64 { return float64(term.Epoch) }))
			log.Info("leading", "id", id, "leader_epoch", term.Epoch, "high_availability", haMode)
			jm, err := jobmanager.New(jobmanager.Options{
				ID: id, DataDir: c.dataDir, HeartbeatTimeout: heartbeatTimeout, SlotTimeout: slotTimeout,
				CheckpointStorage: checkpointStorage, SavepointDir: savepointDir,
				Registry: registry, Logger: log, Metrics: reg,
				LeaderEpoch: term.Epoch, RecoverJobs: haMode == "file",
			})
			if err != nil {
				return err
			}
			defer jm.Close()
			ls, err := c.listen()
			if err != nil {
				return err
			}
			// The REST API calls the JobManager's own gRPC API over
			// loopback, so it has the same answers and errors as flowctl.
			conn, err := grpc.NewClient(ls.rpc.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return fmt.Errorf("rest api: %w", err)
			}
			defer conn.Close()
			rest := restapi.New(clusterv1.NewJobManagerServiceClient(conn))
			defer rest.Close()
			app := http.NewServeMux()
			app.Handle("/api/", rest)
			app.Handle("/", webui.Handler())
			ls.api = app
			return serve(cmd.Context(), log, ls, reg, jm.Register, jm.Ready, func(ctx context.Context) error {
				if err := term.Publish(advertised(ls.rpc.Addr(), advertise)); err != nil {
					log.Warn("high availability", "err", err)
				}
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
	cmd.Flags().StringVar(&haMode, "high-availability", "none", "none: fail at start if another JobManager holds --data-dir; file: wait as a standby while another JobManager leads the shared --data-dir, then take over and recover its running jobs from their latest checkpoints")
	cmd.Flags().StringVar(&advertise, "advertise-host", "", "host TaskManagers and standbys reach this JobManager's RPC address at (default: the --rpc-address host)")
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
			log, err := c.prepare(cmd)
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
			lock, err := datadir.Lock(c.dataDir)
			if err != nil {
				return err
			}
			defer lock.Release()
			ls, err := c.listen()
			if err != nil {
				return err
			}
			var httpAddr string
			if ls.http != nil {
				httpAddr = advertised(ls.http.Addr(), advertise)
			}
			reg := NewRegistry()
			tm, err := taskmanager.New(taskmanager.Options{
				ID: id, JobManager: jmAddr, Slots: slots, DataDir: c.dataDir, StateMemory: stateBytes,
				HTTPAddress: httpAddr, Registry: registry, Logger: log, Metrics: reg,
			})
			if err != nil {
				ls.close()
				return err
			}
			ready := func(context.Context) error { return tm.Ready() }
			return serve(cmd.Context(), log, ls, reg, tm.Register, ready, func(ctx context.Context) error {
				addr := advertised(ls.rpc.Addr(), advertise)
				tm.SetAddress(addr)
				log.Info("taskmanager started", "id", tm.ID(), "advertised_address", addr, "jobmanager", jmAddr, "slots", slots)
				return tm.Run(ctx)
			})
		},
	}
	c.register(cmd, "127.0.0.1:0", "127.0.0.1:0", filepath.Join("flow-data", "taskmanager"))
	f := cmd.Flags()
	f.StringVar(&jmAddr, "jobmanager", "localhost:6123", "the JobManager's RPC address; with standby JobManagers, all their addresses separated by commas")
	f.IntVar(&slots, "slots", 4, "number of task slots to offer")
	f.StringVar(&id, "id", "", "TaskManager id (default: tm-<hostname>-<random>)")
	f.StringVar(&stateMemory, "state-memory", "512MiB", "memory budget of the Pebble state backends (one shared block cache), e.g. 512MiB or 2GiB")
	f.StringVar(&advertise, "advertise-host", "", "host other processes reach this TaskManager's RPC and HTTP addresses at (default: the --rpc-address and --http-address hosts)")
	return cmd
}

// serve runs the gRPC server, the HTTP endpoint (readiness from ready) and
// the daemon's main loop on ls until SIGINT/SIGTERM or until run returns,
// then stops all three.
func serve(parent context.Context, log *slog.Logger, ls *listeners, reg *prometheus.Registry,
	register func(*grpc.Server), ready func(context.Context) error, run func(ctx context.Context) error) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	rpcL, httpL := ls.rpc, ls.http
	srv := grpc.NewServer(rpcerr.ServerOptions()...)
	register(srv)
	// The standard gRPC health service, SERVING while ready is nil.
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
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
			if err := HTTPWith(ctx, httpL, reg, ready, withPprof(ls.api, ls.pprof)); err != nil {
				errc <- fmt.Errorf("http server: %w", err)
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		followReadiness(ctx, hs, ready)
	}()
	runErr := run(ctx)
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

// followReadiness sets the gRPC health status from ready every second until
// ctx ends, then NOT_SERVING.
func followReadiness(ctx context.Context, hs *health.Server, ready func(context.Context) error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, readyTimeout)
		st := healthpb.HealthCheckResponse_SERVING
		if ready(rctx) != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		cancel()
		hs.SetServingStatus("", st)
		select {
		case <-ctx.Done():
			hs.Shutdown()
			return
		case <-t.C:
		}
	}
}

// withPprof adds Go's profiles under /debug/pprof/ in front of app when on.
func withPprof(app http.Handler, on bool) http.Handler {
	if !on {
		return app
	}
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if app != nil {
		m.Handle("/", app)
	}
	return m
}

// waitToLead campaigns for the lead of the data dir as a standby: while
// another JobManager leads, it serves only the HTTP probes (/readyz
// answers 503 naming the leader) and metrics, and it returns once this
// JobManager leads, or with ctx's error on SIGINT/SIGTERM.
func waitToLead(parent context.Context, log *slog.Logger, c *common, e *ha.FileElection, reg *prometheus.Registry, id string) (*ha.Term, error) {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	e.Waiting = func(err error) {
		info, ok, lerr := e.Leader()
		switch {
		case lerr != nil:
			log.Warn("standby: another JobManager leads; waiting to take over", "holder", err.Error(), "err", lerr)
		case ok:
			log.Info("standby: another JobManager leads; waiting to take over", "leader", info.ID, "leader_address", info.Address, "leader_epoch", info.Epoch)
		default:
			log.Info("standby: another JobManager leads; waiting to take over", "holder", err.Error())
		}
	}
	if c.httpAddress != "" {
		l, err := Listen(c.httpAddress, "http-address")
		if err != nil {
			return nil, err
		}
		log.Info("standby: serving probes", "http_address", l.Addr().String())
		standby := func(context.Context) error {
			if info, ok, _ := e.Leader(); ok {
				return fmt.Errorf("standby JobManager: %s (leader epoch %d) at %s leads; this one takes over when it stops", info.ID, info.Epoch, info.Address)
			}
			return errors.New("standby JobManager: another JobManager leads the data dir; this one takes over when it stops")
		}
		hctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- HTTP(hctx, l, reg, standby) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				log.Warn("standby http server", "err", err)
			}
		}()
	}
	return e.Campaign(ctx, id)
}
