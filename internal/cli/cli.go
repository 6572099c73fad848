package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowrt/flow/pkg/api"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitError    = 1
	ExitUsage    = 2
	ExitFailed   = 3
	ExitCanceled = 4
)

// Defaults of the global flags.
const (
	DefaultJobManager = "localhost:6123"
	DefaultTimeout    = 10 * time.Second
	EnvJobManager     = "FLOW_JOBMANAGER"
)

// Version is flowctl's version; release builds set it with
// -ldflags "-X github.com/flowrt/flow/internal/cli.Version=v1.2.3".
var Version = ""

// Env is what flowctl needs from its process: the registry of operator
// types, output streams and environment. Tests inject their own.
type Env struct {
	// Registry of operator types used to validate specs and by `local`
	// (default api.Default).
	Registry *api.Registry
	Stdout   io.Writer
	Stderr   io.Writer
	// Getenv reads environment variables (default os.Getenv).
	Getenv func(string) string
	// Now is the clock for printed times (default time.Now).
	Now func() time.Time
	// ProgressInterval overrides how often run and local print their live
	// progress (default: 1s on a terminal, 5s otherwise).
	ProgressInterval time.Duration
}

// exitError carries an exit code with the error to print.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageError marks bad flags or arguments (exit 2, with a pointer to help).
func usageError(cmd *cobra.Command, format string, args ...any) error {
	return withCode(ExitUsage, fmt.Errorf("%s: see '%s --help'", fmt.Sprintf(format, args...), cmd.CommandPath()))
}

// Main runs flowctl with args (without the program name) and returns the
// process exit code. ctx cancels long-running commands (a signal).
func Main(ctx context.Context, args []string, env Env) int {
	if env.Registry == nil {
		env.Registry = api.Default
	}
	if env.Stdout == nil {
		env.Stdout = os.Stdout
	}
	if env.Stderr == nil {
		env.Stderr = os.Stderr
	}
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	root := NewCommand(&env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(env.Stderr, err.Error())
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitError
}

// globals are the persistent flags.
type globals struct {
	env        *Env
	jobManager string
	output     string
	timeout    time.Duration
}

// NewCommand builds the flowctl command tree.
func NewCommand(env *Env) *cobra.Command {
	g := &globals{env: env}
	root := &cobra.Command{
		Use:   "flowctl",
		Short: "Run and manage Flow jobs",
		Long: `flowctl submits job specs to a Flow cluster, follows and inspects jobs,
and runs jobs on an in-process cluster (flowctl local).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// With Args and RunE set, an unknown command reaches Args (a usage
		// error, exit 2) instead of cobra's plain error (exit 1).
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			hint := ""
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				hint = fmt.Sprintf(" (did you mean %q?)", s[0])
			}
			return usageError(cmd, "unknown command %q for %q%s", args[0], cmd.CommandPath(), hint)
		},
		RunE:                       func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		SuggestionsMinimumDistance: 2,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "table" && g.output != "json" && g.output != "yaml" {
				return usageError(cmd, "-o %q is not an output format: use table, json or yaml", g.output)
			}
			if g.timeout <= 0 {
				return usageError(cmd, "--timeout %v must be positive", g.timeout)
			}
			if strings.TrimSpace(g.jobManager) == "" {
				return usageError(cmd, "--jobmanager is empty: give HOST:PORT")
			}
			return nil
		},
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError(cmd, "%v", err)
	})
	jm := env.Getenv(EnvJobManager)
	if jm == "" {
		jm = DefaultJobManager
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.jobManager, "jobmanager", jm, "JobManager address HOST:PORT, or a leader and its standbys as HOST:PORT,HOST:PORT (env "+EnvJobManager+")")
	pf.StringVarP(&g.output, "output", "o", "table", "output format of read commands: table, json or yaml")
	pf.DurationVar(&g.timeout, "timeout", DefaultTimeout, "timeout of each request to the JobManager")

	root.AddCommand(
		runCommand(g),
		localCommand(g),
		validateCommand(g),
		listCommand(g),
		describeCommand(g),
		cancelCommand(g),
		checkpointsCommand(g),
		savepointCommand(g),
		stopCommand(g),
		taskManagersCommand(g),
		operatorsCommand(g),
		versionCommand(g),
	)
	g.registerCompletions(root)
	return root
}

// exactArgs is cobra.ExactArgs with a usage error naming the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError(cmd, "want %s, got %d argument(s)", names, len(args))
		}
		return nil
	}
}

func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print flowctl's version",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, goVersion := Version, ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
				if v == "" {
					v = bi.Main.Version
					for _, s := range bi.Settings {
						if s.Key == "vcs.revision" && (v == "" || v == "(devel)") {
							v = "devel-" + s.Value[:min(12, len(s.Value))]
						}
					}
				}
			}
			if v == "" {
				v = "(devel)"
			}
			fmt.Fprintf(g.env.Stdout, "flowctl %s %s\n", v, goVersion)
			return nil
		},
	}
}
