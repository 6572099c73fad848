package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// client is a connection to the JobManager.
type client struct {
	addr string
	conn *grpc.ClientConn
	jm   clusterv1.JobManagerServiceClient
	g    *globals
}

// dial creates the client; the connection is made by the first call, which
// fails fast (no WaitForReady) when the JobManager is unreachable.
func (g *globals) dial() (*client, error) {
	return dialAddr(g, g.jobManager)
}

// dialAddr connects to addr: one HOST:PORT, or the addresses of a leader
// and its standbys separated by commas. Of a list, the calls go to the
// first address that accepts a connection: a standby JobManager does not
// listen for RPC, so that is the leader.
func dialAddr(g *globals, addr string) (*client, error) {
	target, opts := addr, []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if strings.Contains(addr, ",") {
		var addrs []resolver.Address
		for _, a := range strings.Split(addr, ",") {
			if a = strings.TrimSpace(a); a == "" {
				return nil, withCode(ExitUsage, fmt.Errorf("bad JobManager address %q: an empty address in the list: give HOST:PORT[,HOST:PORT...] with --jobmanager or %s", addr, EnvJobManager))
			}
			addrs = append(addrs, resolver.Address{Addr: a})
		}
		r := manual.NewBuilderWithScheme("flow-jobmanagers")
		r.InitialState(resolver.State{Addresses: addrs})
		target, opts = r.Scheme()+":///jobmanagers", append(opts, grpc.WithResolvers(r))
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, withCode(ExitUsage, fmt.Errorf("bad JobManager address %q: %v: give HOST:PORT with --jobmanager or %s", addr, err, EnvJobManager))
	}
	return &client{addr: addr, conn: conn, jm: clusterv1.NewJobManagerServiceClient(conn), g: g}, nil
}

func (c *client) Close() error { return c.conn.Close() }

// call runs one unary RPC with the --timeout deadline.
func (c *client) call(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	return f(ctx)
}

// query dials the JobManager, makes one call within --timeout and returns
// its response; what and jobID name a failure (rpcError).
func query[R any](ctx context.Context, g *globals, what, jobID string, rpc func(context.Context, clusterv1.JobManagerServiceClient) (R, error)) (R, error) {
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
	if err != nil {
		return resp, c.rpcError(err, what, jobID)
	}
	return resp, nil
}

// rpcError turns a gRPC error into one line saying what went wrong and what
// to do. what names the operation ("submit the job"); jobID, when set, is
// the job the call was about.
func (c *client) rpcError(err error, what, jobID string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return withCode(ExitError, fmt.Errorf("%s: interrupted", what))
	}
	st, ok := status.FromError(err)
	if !ok {
		return withCode(ExitError, fmt.Errorf("%s: %w", what, err))
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		if reason, ok := transportReason(msg); ok {
			return withCode(ExitError, fmt.Errorf("cannot reach the JobManager at %s (%s): start one, or point flowctl at it with --jobmanager HOST:PORT or %s",
				c.addr, reason, EnvJobManager))
		}
		return withCode(ExitError, fmt.Errorf("the JobManager at %s is unavailable: %s: retry when it is back", c.addr, msg))
	case codes.DeadlineExceeded:
		return withCode(ExitError, fmt.Errorf("%s: the JobManager at %s did not answer within %v: check that it is healthy, or raise --timeout", what, c.addr, c.g.timeout))
	case codes.Canceled:
		return withCode(ExitError, fmt.Errorf("%s: interrupted", what))
	case codes.NotFound:
		if jobID != "" {
			return withCode(ExitError, fmt.Errorf("job %q not found: list jobs with 'flowctl list'", jobID))
		}
		return withCode(ExitError, fmt.Errorf("%s: %s", what, msg))
	case codes.InvalidArgument:
		return withCode(ExitUsage, fmt.Errorf("%s: the JobManager rejected it: %s", what, msg))
	case codes.FailedPrecondition:
		return withCode(ExitError, fmt.Errorf("%s: %s", what, msg))
	case codes.ResourceExhausted:
		return withCode(ExitError, fmt.Errorf("%s: %s: add TaskManagers or slots, or lower the job's parallelism", what, msg))
	case codes.Unimplemented:
		return withCode(ExitError, fmt.Errorf("%s: the JobManager at %s does not support this call (%s): use a flowctl of the cluster's version", what, c.addr, msg))
	case codes.PermissionDenied, codes.Unauthenticated:
		return withCode(ExitError, fmt.Errorf("%s: the JobManager refused access: %s", what, msg))
	}
	return withCode(ExitError, fmt.Errorf("%s: %s (%s)", what, msg, st.Code()))
}

// transportReason extracts why a connection failed from a gRPC transport
// error message.
func transportReason(msg string) (string, bool) {
	if !strings.Contains(msg, "connection error") && !strings.Contains(msg, "dial") &&
		!strings.Contains(msg, "name resolver") && !strings.Contains(msg, "produced zero addresses") {
		return "", false
	}
	for _, r := range []string{"connection refused", "no such host", "i/o timeout", "network is unreachable",
		"connection reset by peer", "no route to host", "produced zero addresses"} {
		if strings.Contains(msg, r) {
			return r, true
		}
	}
	return "connection failed", true
}
