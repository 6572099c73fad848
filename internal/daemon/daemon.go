// Package daemon holds what the jobmanager and taskmanager binaries share:
// configuration layering (flags over FLOW_* environment over a YAML file over
// defaults), the data dir lock, logging setup, the HTTP endpoint (/metrics,
// /livez, /readyz, /healthz), and listeners.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// EnvName is the environment variable that sets a flag: FLOW_ plus the flag
// name in upper case with dashes as underscores (rpc-address ->
// FLOW_RPC_ADDRESS).
func EnvName(flag string) string {
	return "FLOW_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ApplyConfig fills every flag that was not given on the command line from
// its FLOW_* environment variable, else from the YAML config file (a mapping
// whose keys are flag names), leaving defaults for the rest. Unknown keys in
// the file and values that do not parse are errors naming the key.
func ApplyConfig(fs *pflag.FlagSet, configFile string, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if set[f.Name] || f.Name == "config" {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %w", EnvName(f.Name), v, err))
			}
			set[f.Name] = true
		}
	})
	if configFile == "" {
		return errors.Join(errs...)
	}
	data, err := os.ReadFile(configFile)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	var m map[string]yaml.Node
	if err := yaml.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("config file %s is not a YAML mapping of flag names to values: %w", configFile, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		n := m[k]
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			errs = append(errs, fmt.Errorf("%s:%d: unknown key %q (keys are flag names: see --help)", configFile, n.Line, k))
			continue
		}
		if set[k] {
			continue
		}
		var v string
		switch n.Kind {
		case yaml.ScalarNode:
			v = n.Value
		case yaml.SequenceNode:
			parts := make([]string, 0, len(n.Content))
			for _, c := range n.Content {
				parts = append(parts, c.Value)
			}
			v = strings.Join(parts, ",")
		default:
			errs = append(errs, fmt.Errorf("%s:%d: key %q needs a scalar value", configFile, n.Line, k))
			continue
		}
		if err := fs.Set(k, v); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: key %q: %w", configFile, n.Line, k, err))
		}
	}
	return errors.Join(errs...)
}

// NewLogger builds the process logger: format text or json, level debug,
// info, warn or error.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// NewRegistry returns a fresh Prometheus registry with the Go runtime and
// process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	return r
}

// buildInfo is flow_build_info: 1, labelled with the Flow module's version
// and the Go version the daemon was built with (for dashboards that show
// what runs where, and alerts on mixed versions).
func buildInfo() prometheus.Collector {
	version, goVersion := "(devel)", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, m := range append([]*debug.Module{&bi.Main}, bi.Deps...) {
			if m.Path == "github.com/flowrt/flow" && m.Version != "" {
				version = m.Version
				break
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "flow_build_info",
		Help:        "Always 1; the labels name the Flow version and the Go version of this daemon.",
		ConstLabels: prometheus.Labels{"version": version, "go_version": goVersion}})
	g.Set(1)
	return g
}

// Listen opens a TCP listener; port 0 picks a free port.
func Listen(addr, what string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for %s on %s: %w (choose another with --%s)", what, addr, err, what)
	}
	return l, nil
}

// readyTimeout bounds one readiness check.
const readyTimeout = 5 * time.Second

// HTTP serves on l until ctx ends:
//
//   - /metrics: reg's metrics;
//   - /livez: 200 "ok" while the process serves HTTP (liveness);
//   - /readyz: 200 "ok" while ready is nil, else 503 with its one-line
//     reason (readiness: registered with the JobManager, a writable job
//     store);
//   - /healthz: the same as /readyz, for probes written before it.
func HTTP(ctx context.Context, l net.Listener, reg *prometheus.Registry, ready func(context.Context) error) error {
	return HTTPWith(ctx, l, reg, ready, nil)
}

// HTTPWith is HTTP with app, when not nil, serving every other path (the
// JobManager's REST API under /api/ and its web UI on /).
func HTTPWith(ctx context.Context, l net.Listener, reg *prometheus.Registry, ready func(context.Context) error, app http.Handler) error {
	mux := http.NewServeMux()
	if app != nil {
		mux.Handle("/", app)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	readyz := func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := ready(rctx); err != nil {
			http.Error(w, strings.ReplaceAll(err.Error(), "\n", " "), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}
	mux.HandleFunc("/readyz", readyz)
	mux.HandleFunc("/healthz", readyz)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
