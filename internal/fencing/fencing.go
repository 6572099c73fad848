// Package fencing carries a JobManager's fencing token on its calls to
// TaskManagers: the JobManager's id, which is new for every JobManager
// process (and, with HA, every leadership term). A TaskManager accepts
// calls only from the JobManager it is registered with, so a stale one (an
// old leader, a process cut off from the cluster) cannot deploy, cancel or
// checkpoint there.
package fencing

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Header is the gRPC metadata key of the token.
const Header = "flow-jobmanager-id"

// Interceptor returns a client interceptor that adds token to every call.
func Interceptor(token string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, Header, token), method, req, reply, cc, opts...)
	}
}

// Check refuses a call whose token is not want (FailedPrecondition, naming
// both). A call without a token (a tool, a test) is accepted, and so is
// any call while want is "" (the TaskManager is registering: the
// JobManager may call before the registration's answer arrived).
func Check(ctx context.Context, want string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	got := md.Get(Header)
	if len(got) == 0 || want == "" || got[0] == want {
		return nil
	}
	return status.Errorf(codes.FailedPrecondition, "call from JobManager %s refused: this TaskManager is registered with JobManager %q", got[0], want)
}
