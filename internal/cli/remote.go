package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// The cluster, not flowctl, knows its operator types: a JobManager built
// with a user's registry parses specs (validate, run), lists types
// (operators) and checks savepoints (savepoint check) with that registry,
// so the stock flowctl needs no rebuild for them. validate, operators and
// savepoint check fall back to flowctl's own registry, with a note on
// stderr, when no JobManager answers (or with --local).

// errNoCluster says the JobManager could not be asked; reason says why.
type errNoCluster struct {
	addr, reason string
	// unimplemented: the JobManager answered but predates the call.
	unimplemented bool
}

func (e *errNoCluster) Error() string {
	if e.unimplemented {
		return fmt.Sprintf("the JobManager at %s predates this call", e.addr)
	}
	return fmt.Sprintf("no JobManager answered at %s (%s)", e.addr, e.reason)
}

// askCluster makes one JobManagerService call within --timeout. It returns
// an *errNoCluster when the JobManager is unreachable or predates the call
// (Unimplemented), and rpcError's one-line error for anything else.
func askCluster[R any](ctx context.Context, g *globals, what string, rpc func(context.Context, clusterv1.JobManagerServiceClient) (R, error)) (R, error) {
	var resp R
	c, err := g.dial()
	if err != nil {
		return resp, err
	}
	defer c.Close()
	err = c.call(ctx, func(ctx context.Context) (err error) {
		resp, err = rpc(ctx, c.jm)
		return err
	})
	if err == nil {
		return resp, nil
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable:
			if reason, ok := transportReason(st.Message()); ok {
				return resp, &errNoCluster{addr: c.addr, reason: reason}
			}
		case codes.Unimplemented:
			return resp, &errNoCluster{addr: c.addr, reason: "unimplemented", unimplemented: true}
		}
	}
	return resp, c.rpcError(err, what, "")
}

// fallbackNote tells on stderr that flowctl's own registry stands in for
// the cluster's.
func (g *globals) fallbackNote(err *errNoCluster, what string) {
	fmt.Fprintf(g.env.Stderr, "note: %v: %s flowctl's own operator types, which lack any the cluster adds: point --jobmanager (or %s) at the cluster to use its types, or pass --local\n",
		err, what, EnvJobManager)
}

// readSpec reads a spec file as loadSpec does.
func readSpec(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, withCode(ExitUsage, fmt.Errorf("read job spec: %w", err))
	}
	return data, nil
}

// problemsError is the spec problems the JobManager found (exit 2, one per
// line, as a local validation prints them).
func problemsError(problems []string) error {
	return withCode(ExitUsage, errors.New(strings.Join(problems, "\n")))
}

// clusterSpec has the JobManager parse the spec at path with its operator
// types. The error is an *errNoCluster when it could not be asked.
func (g *globals) clusterSpec(ctx context.Context, path string, sets []string) (*clusterv1.ValidateSpecResponse, error) {
	data, err := readSpec(path)
	if err != nil {
		return nil, err
	}
	resp, err := askCluster(ctx, g, "validate the job spec", func(ctx context.Context, jm clusterv1.JobManagerServiceClient) (*clusterv1.ValidateSpecResponse, error) {
		return jm.ValidateSpec(ctx, &clusterv1.ValidateSpecRequest{Spec: data, Filename: path, Sets: sets})
	})
	if err != nil {
		return nil, err
	}
	if len(resp.GetProblems()) > 0 {
		return nil, problemsError(resp.GetProblems())
	}
	for _, w := range resp.GetWarnings() {
		fmt.Fprintf(g.env.Stderr, "warning: %s\n", w)
	}
	return resp, nil
}

// clusterTypes lists the JobManager's operator types.
func (g *globals) clusterTypes(ctx context.Context) ([]*clusterv1.OperatorTypeInfo, error) {
	resp, err := askCluster(ctx, g, "list the operator types", func(ctx context.Context, jm clusterv1.JobManagerServiceClient) (*clusterv1.ListOperatorTypesResponse, error) {
		return jm.ListOperatorTypes(ctx, &clusterv1.ListOperatorTypesRequest{})
	})
	if err != nil {
		return nil, err
	}
	return resp.GetTypes(), nil
}

// asNoCluster reports whether err says the cluster could not be asked.
func asNoCluster(err error) (*errNoCluster, bool) {
	var nc *errNoCluster
	ok := errors.As(err, &nc)
	return nc, ok
}

// unreachable is the error of a command that needs the cluster.
func (e *errNoCluster) unreachable() error {
	return withCode(ExitError, fmt.Errorf("cannot reach the JobManager at %s (%s): start one, or point flowctl at it with --jobmanager HOST:PORT or %s",
		e.addr, e.reason, EnvJobManager))
}

// specFor is the graph of the spec at path as the cluster parses it, for
// commands that need the cluster (run): a JobManager that predates
// ValidateSpec leaves it to flowctl's own registry.
func (g *globals) specFor(ctx context.Context, path string, sets []string) (*jobgraphv1.JobGraph, error) {
	resp, err := g.clusterSpec(ctx, path, sets)
	if err == nil {
		return resp.GetGraph(), nil
	}
	nc, ok := asNoCluster(err)
	if !ok {
		return nil, err
	}
	if !nc.unimplemented {
		return nil, nc.unreachable()
	}
	graph, _, err := g.loadSpec(path, sets)
	return graph, err
}
