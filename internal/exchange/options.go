package exchange

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// PartitionID names a producer subtask's partition towards one downstream task vertex.
type PartitionID struct {
	JobID          string
	Attempt        int32
	Task           string // producing task vertex id
	Subtask        int32
	DownstreamTask string
}

// String renders the id as job/attempt/task[subtask]->downstream, the form
// used in every error message of this package.
func (id PartitionID) String() string {
	return fmt.Sprintf("%s/%d/%s[%d]->%s", id.JobID, id.Attempt, id.Task, id.Subtask, id.DownstreamTask)
}

// Options configure a Manager. Zero values select the documented defaults.
type Options struct {
	// SelfAddress is this TaskManager's RPC address; channels whose Address
	// equals it are local. It may be set later with Manager.SetSelfAddress.
	SelfAddress string
	// BufferSize is the initial capacity of pooled buffers. Default 32 KiB.
	BufferSize int
	// BuffersPerChannel is the number of exclusive buffers per subpartition
	// and the credit window of every remote input channel. Default 8: with
	// 32 KiB buffers a remote channel holds at most 256 KiB on the consumer
	// side, and a producer partition at most (subpartitions*8 + 8) buffers;
	// 4 leaves the producer waiting on credit round trips (about 10% less
	// throughput on loopback), 16 bought nothing measurable.
	BuffersPerChannel int
	// FloatingBuffers is the number of extra buffers per partition shared by
	// all its subpartitions. Default 8.
	FloatingBuffers int
	// RegisterTimeout is how long a consumer waits for a producer partition
	// to be registered (and, remotely, for the producer's TaskManager to be
	// reachable). Default 30s.
	RegisterTimeout time.Duration
	// DialOptions are used for the one grpc.ClientConn per remote address.
	// Default: insecure transport credentials and 1 MiB stream / 16 MiB
	// connection HTTP/2 windows (credit already bounds memory).
	DialOptions []grpc.DialOption
	// Logger receives diagnostics. Default: slog.Default().
	Logger *slog.Logger
	// Metrics, if not nil, receives the flow_exchange_* metrics. Never pass
	// the global registry from library code.
	Metrics prometheus.Registerer

	// heartbeatInterval is how often an idle producer stream sends an empty
	// message; livenessTimeout is how long a consumer tolerates silence on
	// a stream before declaring the producer lost. Tests shorten them.
	heartbeatInterval time.Duration
	livenessTimeout   time.Duration
}

const (
	defaultBufferSize        = 32 << 10
	defaultBuffersPerChannel = 8
	defaultFloatingBuffers   = 8
	defaultRegisterTimeout   = 30 * time.Second
	defaultHeartbeatInterval = 2 * time.Second
	defaultLivenessTimeout   = 10 * time.Second
)

func (o *Options) ensureDefaults() {
	if o.BufferSize == 0 {
		o.BufferSize = defaultBufferSize
	}
	if o.BuffersPerChannel == 0 {
		o.BuffersPerChannel = defaultBuffersPerChannel
	}
	if o.FloatingBuffers == 0 {
		o.FloatingBuffers = defaultFloatingBuffers
	}
	if o.RegisterTimeout == 0 {
		o.RegisterTimeout = defaultRegisterTimeout
	}
	if o.DialOptions == nil {
		o.DialOptions = []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// Credit, not HTTP/2 flow control, bounds what a stream buffers;
			// large windows avoid stalls on WINDOW_UPDATE round trips.
			grpc.WithInitialWindowSize(1 << 20),
			grpc.WithInitialConnWindowSize(16 << 20),
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.heartbeatInterval == 0 {
		o.heartbeatInterval = defaultHeartbeatInterval
	}
	if o.livenessTimeout == 0 {
		o.livenessTimeout = defaultLivenessTimeout
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.BufferSize < 0 {
		errs = append(errs, fmt.Errorf("BufferSize %d is negative; use 0 for the default %d", o.BufferSize, defaultBufferSize))
	}
	if o.BuffersPerChannel < 0 {
		errs = append(errs, fmt.Errorf("BuffersPerChannel %d is negative; use 0 for the default %d", o.BuffersPerChannel, defaultBuffersPerChannel))
	}
	if o.FloatingBuffers < 0 {
		errs = append(errs, fmt.Errorf("FloatingBuffers %d is negative; use 0 for the default %d", o.FloatingBuffers, defaultFloatingBuffers))
	}
	if o.RegisterTimeout < 0 {
		errs = append(errs, fmt.Errorf("RegisterTimeout %s is negative; use 0 for the default %s", o.RegisterTimeout, defaultRegisterTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("exchange: invalid options: %w", err)
	}
	return nil
}
