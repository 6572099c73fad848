// Package fencing carries a JobManager's fencing token on its calls to
// TaskManagers: the JobManager's id, which is new for every JobManager
// process, and its leader epoch, which grows with every leadership term
// (package internal/jobmanager/ha; 0 for a JobManager that was not
// elected, e.g. one embedded in a test).
//
// A TaskManager remembers the JobManager it registered with and the
// highest epoch it has seen. It refuses a call of a lower epoch (a
// deposed leader, a process cut off from the cluster that still thinks it
// leads), and, within one epoch, a call of another JobManager than its
// own. A call of a higher epoch comes from a new leader the TaskManager
// has not registered with yet: it is accepted, and the epoch becomes the
// one the TaskManager follows. Together with the job attempt a
// deployment carries, an old leader can neither deploy, cancel nor
// checkpoint on a TaskManager once a newer one reached it.
package fencing

import (
	"context"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Header is the gRPC metadata key of the JobManager's id; EpochHeader
// the key of its leader epoch.
const (
	Header      = "flow-jobmanager-id"
	EpochHeader = "flow-leader-epoch"
)

// Token identifies a JobManager's leadership.
type Token struct {
	ID    string
	Epoch uint64
}

// Interceptor returns a client interceptor that adds t to every call.
func Interceptor(t Token) grpc.UnaryClientInterceptor {
	epoch := strconv.FormatUint(t.Epoch, 10)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, Header, t.ID, EpochHeader, epoch), method, req, reply, cc, opts...)
	}
}

// Check decides a call against what the TaskManager follows: registered
// is the JobManager it registered with (ID "" while registering), highest
// the highest epoch it has seen. It returns the epoch to follow from now
// on, or a FailedPrecondition error naming both sides. A call without a
// token (a tool, a test) is accepted.
func Check(ctx context.Context, registered Token, highest uint64) (uint64, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	ids := md.Get(Header)
	if len(ids) == 0 {
		return highest, nil
	}
	id := ids[0]
	var epoch uint64
	if e := md.Get(EpochHeader); len(e) > 0 {
		n, err := strconv.ParseUint(e[0], 10, 64)
		if err != nil {
			return highest, status.Errorf(codes.InvalidArgument, "call from JobManager %s refused: its leader epoch %q is not a number", id, e[0])
		}
		epoch = n
	}
	switch {
	case epoch < highest:
		return highest, status.Errorf(codes.FailedPrecondition, "call from JobManager %s of leader epoch %d refused: this TaskManager follows leader epoch %d (a newer JobManager leads)", id, epoch, highest)
	case epoch > highest:
		return epoch, nil // a new leader, before the TaskManager registered with it
	case registered.ID == "" || id == registered.ID:
		return highest, nil
	}
	return highest, status.Errorf(codes.FailedPrecondition, "call from JobManager %s refused: this TaskManager is registered with JobManager %q (leader epoch %d)", id, registered.ID, highest)
}
