package jobspec

import (
	"math"
	"net/url"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// The job-level sections become the JobGraph's typed fields
// (state_backend_config, checkpoint_config, restart_config) with every
// default applied: see the config methods below. Read them back from any
// graph, typed or stored in the legacy JSON form by an older version, with
// StateBackendOf, CheckpointsOf and RestartOf.

// StateBackend is the stateBackend section.
type StateBackend struct {
	// Type is "heap" (default) or "pebble".
	Type string
	// BlockCacheSize is Pebble's block cache in bytes (0: Pebble's default).
	BlockCacheSize int64
	// MemtableSize is Pebble's memtable size in bytes (0: Pebble's default).
	MemtableSize int64
	// Compression of Pebble's SST blocks: none, snappy (default) or zstd.
	Compression string
}

// Checkpoint modes.
const (
	ModeExactlyOnce = "exactly_once"
	ModeAtLeastOnce = "at_least_once"
)

// Checkpoints is the checkpoints section.
type Checkpoints struct {
	// Interval between checkpoint triggers; 0 (default) disables checkpoints.
	Interval time.Duration
	// Mode is exactly_once (default) or at_least_once.
	Mode string
	// Unaligned checkpoints (exactly_once only).
	Unaligned bool
	// AlignedTimeout: start aligned and switch to unaligned after this long
	// (needs Unaligned; 0 = unaligned from the start).
	AlignedTimeout time.Duration
	// Timeout after which a pending checkpoint is aborted (default 10m).
	Timeout time.Duration
	// MinPause between the end of one checkpoint and the next trigger.
	MinPause time.Duration
	// MaxConcurrent checkpoints in flight (default 1).
	MaxConcurrent int
	// TolerableFailures: consecutive failed checkpoints before the job fails
	// (default 3).
	TolerableFailures int
	// Storage is the checkpoint storage URL (file://, s3://, gs://,
	// azblob://, mem://); empty uses the cluster's default.
	Storage string
	// Retain is the number of completed checkpoints kept (default 1).
	Retain int
	// Incremental uploads only new SST files (pebble backend).
	Incremental bool
	// RetainOnCancel keeps the checkpoints when the job is canceled.
	RetainOnCancel bool
}

// Restart strategies.
const (
	RestartNone             = "none"
	RestartFixedDelay       = "fixed_delay"
	RestartFailureRate      = "failure_rate"
	RestartExponentialDelay = "exponential_delay"
)

// Restart is the restart section. Only the parameters of Strategy are set.
type Restart struct {
	Strategy string
	// Attempts: fixed_delay (default 1); exponential_delay (default
	// unlimited: math.MaxInt32).
	Attempts int
	// Delay between attempts: fixed_delay and failure_rate (default 1s).
	Delay time.Duration
	// failure_rate: fail the job after more than MaxFailuresPerInterval
	// (default 1) failures within FailureRateInterval (default 1m).
	MaxFailuresPerInterval int
	FailureRateInterval    time.Duration
	// exponential_delay: the delay starts at InitialBackoff (default 1s),
	// is multiplied by BackoffMultiplier (default 1.5) after each failure up
	// to MaxBackoff (default 5m), with +-JitterFactor (default 0.1) random
	// jitter, and resets after ResetBackoffThreshold (default 1h) without
	// failure.
	InitialBackoff        time.Duration
	MaxBackoff            time.Duration
	BackoffMultiplier     float64
	ResetBackoffThreshold time.Duration
	JitterFactor          float64
}

// DefaultRestart is the strategy of a spec without a restart section:
// like Flink, fixed_delay with unlimited attempts and 1s delay when
// checkpoints are enabled, none otherwise.
func DefaultRestart(checkpointsEnabled bool) Restart {
	if checkpointsEnabled {
		return Restart{Strategy: RestartFixedDelay, Attempts: math.MaxInt32, Delay: jobgraphv1.DefaultRestartDelay}
	}
	return Restart{Strategy: RestartNone}
}

func defaultCheckpoints() Checkpoints {
	return Checkpoints{Mode: ModeExactlyOnce, Timeout: jobgraphv1.DefaultCheckpointTimeout,
		MaxConcurrent: jobgraphv1.DefaultMaxConcurrentCheckpoints, TolerableFailures: jobgraphv1.DefaultTolerableCheckpointFailures,
		Retain: jobgraphv1.DefaultRetainedCheckpoints}
}

var (
	checkpointModes = map[string]jobgraphv1.CheckpointMode{
		ModeExactlyOnce: jobgraphv1.CheckpointMode_CHECKPOINT_MODE_EXACTLY_ONCE,
		ModeAtLeastOnce: jobgraphv1.CheckpointMode_CHECKPOINT_MODE_AT_LEAST_ONCE,
	}
	restartStrategies = map[string]jobgraphv1.RestartStrategy{
		RestartNone:             jobgraphv1.RestartStrategy_RESTART_STRATEGY_NONE,
		RestartFixedDelay:       jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY,
		RestartFailureRate:      jobgraphv1.RestartStrategy_RESTART_STRATEGY_FAILURE_RATE,
		RestartExponentialDelay: jobgraphv1.RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY,
	}
)

func nameOf[E comparable](names map[string]E, v E) string {
	for n, e := range names {
		if e == v {
			return n
		}
	}
	return ""
}

// config is the section as the graph's typed state_backend_config.
func (s StateBackend) config() *jobgraphv1.StateBackendConfig {
	return &jobgraphv1.StateBackendConfig{Type: s.Type, BlockCacheSize: s.BlockCacheSize, MemtableSize: s.MemtableSize, Compression: s.Compression}
}

// config is the section as the graph's typed checkpoint_config, every
// field set.
func (c Checkpoints) config() *jobgraphv1.CheckpointConfig {
	return &jobgraphv1.CheckpointConfig{
		Interval: durationpb.New(c.Interval), Mode: checkpointModes[c.Mode], Unaligned: c.Unaligned,
		AlignedTimeout: durationpb.New(c.AlignedTimeout), Timeout: durationpb.New(c.Timeout), MinPause: durationpb.New(c.MinPause),
		MaxConcurrent: proto.Int32(int32(c.MaxConcurrent)), TolerableFailures: proto.Int32(int32(c.TolerableFailures)),
		Storage: c.Storage, Retain: proto.Int32(int32(c.Retain)), Incremental: c.Incremental, RetainOnCancel: c.RetainOnCancel,
	}
}

// config is the section as the graph's typed restart_config: the strategy
// and every one of its parameters set (a zero one too).
func (r Restart) config() *jobgraphv1.RestartConfig {
	c := &jobgraphv1.RestartConfig{Strategy: restartStrategies[r.Strategy]}
	switch r.Strategy {
	case RestartFixedDelay:
		c.Attempts, c.Delay = proto.Int32(int32(r.Attempts)), durationpb.New(r.Delay)
	case RestartFailureRate:
		c.MaxFailuresPerInterval, c.FailureRateInterval = proto.Int32(int32(r.MaxFailuresPerInterval)), durationpb.New(r.FailureRateInterval)
		c.Delay = durationpb.New(r.Delay)
	case RestartExponentialDelay:
		c.InitialBackoff, c.MaxBackoff = durationpb.New(r.InitialBackoff), durationpb.New(r.MaxBackoff)
		c.BackoffMultiplier, c.ResetBackoffThreshold = proto.Float64(r.BackoffMultiplier), durationpb.New(r.ResetBackoffThreshold)
		c.JitterFactor, c.Attempts = proto.Float64(r.JitterFactor), proto.Int32(int32(r.Attempts))
	}
	return c
}

// StateBackendOf returns the stateBackend section of g (typed, or the
// legacy JSON of a graph built by an older version; see
// JobGraph.EffectiveStateBackendConfig).
func StateBackendOf(g *jobgraphv1.JobGraph) (StateBackend, error) {
	c, err := g.EffectiveStateBackendConfig()
	if err != nil {
		return StateBackend{}, err
	}
	return StateBackend{Type: c.GetType(), BlockCacheSize: c.GetBlockCacheSize(), MemtableSize: c.GetMemtableSize(), Compression: c.GetCompression()}, nil
}

// CheckpointsOf returns the checkpoints section of g (typed, or the legacy
// JSON of a graph built by an older version; see
// JobGraph.EffectiveCheckpointConfig); a graph without one gives the
// defaults (checkpoints disabled).
func CheckpointsOf(g *jobgraphv1.JobGraph) (Checkpoints, error) {
	c, err := g.EffectiveCheckpointConfig()
	if err != nil {
		return Checkpoints{}, err
	}
	return Checkpoints{
		Interval: c.GetInterval().AsDuration(), Mode: nameOf(checkpointModes, c.GetMode()), Unaligned: c.GetUnaligned(),
		AlignedTimeout: c.GetAlignedTimeout().AsDuration(), Timeout: c.GetTimeout().AsDuration(), MinPause: c.GetMinPause().AsDuration(),
		MaxConcurrent: int(c.GetMaxConcurrent()), TolerableFailures: int(c.GetTolerableFailures()), Storage: c.GetStorage(),
		Retain: int(c.GetRetain()), Incremental: c.GetIncremental(), RetainOnCancel: c.GetRetainOnCancel(),
	}, nil
}

// RestartOf returns the restart section of g (typed, or the legacy JSON of
// a graph built by an older version; see JobGraph.EffectiveRestartConfig);
// a graph without one gives strategy none.
func RestartOf(g *jobgraphv1.JobGraph) (Restart, error) {
	c, err := g.EffectiveRestartConfig()
	if err != nil {
		return Restart{}, err
	}
	r := Restart{Strategy: nameOf(restartStrategies, c.GetStrategy())}
	switch c.GetStrategy() {
	case jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY:
		r.Attempts, r.Delay = int(c.GetAttempts()), c.GetDelay().AsDuration()
	case jobgraphv1.RestartStrategy_RESTART_STRATEGY_FAILURE_RATE:
		r.MaxFailuresPerInterval, r.FailureRateInterval = int(c.GetMaxFailuresPerInterval()), c.GetFailureRateInterval().AsDuration()
		r.Delay = c.GetDelay().AsDuration()
	case jobgraphv1.RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY:
		r.InitialBackoff, r.MaxBackoff, r.BackoffMultiplier = c.GetInitialBackoff().AsDuration(), c.GetMaxBackoff().AsDuration(), c.GetBackoffMultiplier()
		r.ResetBackoffThreshold, r.JitterFactor, r.Attempts = c.GetResetBackoffThreshold().AsDuration(), c.GetJitterFactor(), int(c.GetAttempts())
	}
	return r, nil
}

var (
	stateBackendKeys = []string{"type", "blockCacheSize", "memtableSize", "compression"}
	checkpointKeys   = []string{"interval", "mode", "unaligned", "alignedTimeout", "timeout",
		"minPause", "maxConcurrent", "tolerableFailures", "storage", "retain", "incremental", "retainOnCancel"}
	restartKeys = []string{"strategy", "attempts", "delay", "maxFailuresPerInterval", "failureRateInterval",
		"initialBackoff", "maxBackoff", "backoffMultiplier", "resetBackoffThreshold", "jitterFactor"}
)

var storageSchemes = []string{"file", "s3", "gs", "azblob", "mem"}

func (p *parser) stateBackend(n *yaml.Node) StateBackend {
	s := StateBackend{Type: jobgraphv1.DefaultStateBackend}
	if n == nil {
		return s
	}
	m, ok := p.mapping(n, "stateBackend", stateBackendKeys)
	if !ok {
		return s
	}
	if e, ok := m["type"]; ok {
		if v, ok := p.enum(e, "stateBackend.type", "heap", "pebble"); ok {
			s.Type = v
		}
	}
	for _, k := range []string{"blockCacheSize", "memtableSize", "compression"} {
		if e, ok := m[k]; ok && s.Type != "pebble" {
			p.errAt(e.key, "stateBackend.%s applies to the pebble backend only: remove it or set stateBackend.type: pebble", k)
		}
	}
	if s.Type != "pebble" {
		return s
	}
	s.Compression = "snappy"
	if e, ok := m["blockCacheSize"]; ok {
		s.BlockCacheSize, _ = p.size(e, "stateBackend.blockCacheSize")
	}
	if e, ok := m["memtableSize"]; ok {
		if v, ok := p.size(e, "stateBackend.memtableSize"); ok {
			if v != 0 && v < 1<<20 {
				p.errAt(e.val, "stateBackend.memtableSize: %d bytes is too small: use at least 1MiB", v)
			}
			s.MemtableSize = v
		}
	}
	if e, ok := m["compression"]; ok {
		if v, ok := p.enum(e, "stateBackend.compression", "none", "snappy", "zstd"); ok {
			s.Compression = v
		}
	}
	return s
}

func (p *parser) checkpoints(n *yaml.Node, backend StateBackend) Checkpoints {
	c := defaultCheckpoints()
	if n == nil {
		return c
	}
	m, ok := p.mapping(n, "checkpoints", checkpointKeys)
	if !ok {
		return c
	}
	if e, ok := m["interval"]; ok {
		if d, ok := p.duration(e, "checkpoints.interval"); ok {
			if d != 0 && d < 10*time.Millisecond {
				p.errAt(e.val, "checkpoints.interval: %v is too short: use at least 10ms, or 0 to disable checkpoints", d)
			}
			c.Interval = d
		}
	}
	if e, ok := m["mode"]; ok {
		c.Mode, _ = p.enum(e, "checkpoints.mode", ModeExactlyOnce, ModeAtLeastOnce)
		if c.Mode == "" {
			c.Mode = ModeExactlyOnce
		}
	}
	if e, ok := m["unaligned"]; ok {
		c.Unaligned, _ = p.boolean(e, "checkpoints.unaligned")
		if c.Unaligned && c.Mode == ModeAtLeastOnce {
			p.errAt(e.val, "checkpoints.unaligned: unaligned checkpoints need mode exactly_once: remove unaligned or the mode")
		}
	}
	if e, ok := m["alignedTimeout"]; ok {
		c.AlignedTimeout, _ = p.duration(e, "checkpoints.alignedTimeout")
		if !c.Unaligned {
			p.errAt(e.key, "checkpoints.alignedTimeout: only applies with unaligned: true: add it or remove alignedTimeout")
		}
	}
	if e, ok := m["timeout"]; ok {
		if d, ok := p.duration(e, "checkpoints.timeout"); ok {
			if d <= 0 {
				p.errAt(e.val, "checkpoints.timeout: must be positive, such as 10m")
			} else {
				c.Timeout = d
			}
		}
	}
	if e, ok := m["minPause"]; ok {
		c.MinPause, _ = p.duration(e, "checkpoints.minPause")
	}
	if e, ok := m["maxConcurrent"]; ok {
		if v, ok := p.intIn(e, "checkpoints.maxConcurrent", 1, math.MaxInt32); ok {
			c.MaxConcurrent = int(v)
		}
	}
	if e, ok := m["tolerableFailures"]; ok {
		if v, ok := p.intIn(e, "checkpoints.tolerableFailures", 0, math.MaxInt32); ok {
			c.TolerableFailures = int(v)
		}
	}
	if e, ok := m["storage"]; ok {
		if s, ok := p.str(e, "checkpoints.storage"); ok {
			u, err := url.Parse(s)
			switch {
			case err != nil || u.Scheme == "":
				p.errAt(e.val, "checkpoints.storage: %q is not a URL: write one such as file:///var/flow/checkpoints or s3://bucket/prefix", s)
			case !contains(storageSchemes, u.Scheme):
				p.errAt(e.val, "checkpoints.storage: scheme %q is not supported: use one of %s", u.Scheme, strings.Join(storageSchemes, ", "))
			default:
				c.Storage = s
			}
		}
	}
	if e, ok := m["retain"]; ok {
		if v, ok := p.intIn(e, "checkpoints.retain", 1, math.MaxInt32); ok {
			c.Retain = int(v)
		}
	}
	if e, ok := m["incremental"]; ok {
		c.Incremental, _ = p.boolean(e, "checkpoints.incremental")
		if c.Incremental && backend.Type != "pebble" {
			p.errAt(e.val, "checkpoints.incremental: needs stateBackend.type pebble (the heap backend snapshots in full): remove it or switch backends")
		}
	}
	if e, ok := m["retainOnCancel"]; ok {
		c.RetainOnCancel, _ = p.boolean(e, "checkpoints.retainOnCancel")
	}
	return c
}

var restartParams = map[string][]string{
	RestartNone:             {},
	RestartFixedDelay:       {"attempts", "delay"},
	RestartFailureRate:      {"maxFailuresPerInterval", "failureRateInterval", "delay"},
	RestartExponentialDelay: {"initialBackoff", "maxBackoff", "backoffMultiplier", "resetBackoffThreshold", "jitterFactor", "attempts"},
}

func (p *parser) restart(n *yaml.Node, checkpointsEnabled bool) Restart {
	if n == nil {
		return DefaultRestart(checkpointsEnabled)
	}
	all := restartKeys
	m, ok := p.mapping(n, "restart", all)
	if !ok {
		return DefaultRestart(checkpointsEnabled)
	}
	e, ok := m["strategy"]
	if !ok {
		p.errAt(n, "restart: strategy is required: use one of none, fixed_delay, failure_rate, exponential_delay")
		return DefaultRestart(checkpointsEnabled)
	}
	strategy, ok := p.enum(e, "restart.strategy", RestartNone, RestartFixedDelay, RestartFailureRate, RestartExponentialDelay)
	if !ok {
		return DefaultRestart(checkpointsEnabled)
	}
	allowed := restartParams[strategy]
	for _, k := range all[1:] {
		if e, ok := m[k]; ok && !contains(allowed, k) {
			p.errAt(e.key, "restart.%s is not a parameter of strategy %s (its parameters: %s): remove it", k, strategy, paramList(allowed))
		}
	}
	r := Restart{Strategy: strategy}
	dur := func(k string, def time.Duration, positive bool) time.Duration {
		e, ok := m[k]
		if !ok {
			return def
		}
		d, ok := p.duration(e, "restart."+k)
		if !ok {
			return def
		}
		if positive && d <= 0 {
			p.errAt(e.val, "restart.%s: must be positive, such as 1s", k)
			return def
		}
		return d
	}
	integer := func(k string, def int) int {
		e, ok := m[k]
		if !ok {
			return def
		}
		v, ok := p.intIn(e, "restart."+k, 1, math.MaxInt32)
		if !ok {
			return def
		}
		return int(v)
	}
	float := func(k string, def, lo, hi float64, rangeText string) float64 {
		e, ok := m[k]
		if !ok {
			return def
		}
		v, ok := p.float(e, "restart."+k)
		if !ok {
			return def
		}
		if v < lo || v > hi {
			p.errAt(e.val, "restart.%s: %v is out of range: use %s", k, v, rangeText)
			return def
		}
		return v
	}
	switch strategy {
	case RestartFixedDelay:
		r.Attempts = integer("attempts", jobgraphv1.DefaultFixedDelayAttempts)
		r.Delay = dur("delay", jobgraphv1.DefaultRestartDelay, false)
	case RestartFailureRate:
		r.MaxFailuresPerInterval = integer("maxFailuresPerInterval", jobgraphv1.DefaultMaxFailuresPerInterval)
		r.FailureRateInterval = dur("failureRateInterval", jobgraphv1.DefaultFailureRateInterval, true)
		r.Delay = dur("delay", jobgraphv1.DefaultRestartDelay, false)
	case RestartExponentialDelay:
		r.InitialBackoff = dur("initialBackoff", jobgraphv1.DefaultInitialBackoff, true)
		r.MaxBackoff = dur("maxBackoff", jobgraphv1.DefaultMaxBackoff, true)
		r.BackoffMultiplier = float("backoffMultiplier", jobgraphv1.DefaultBackoffMultiplier, 1, math.MaxFloat64, "a factor of at least 1.0")
		r.ResetBackoffThreshold = dur("resetBackoffThreshold", jobgraphv1.DefaultResetBackoffThreshold, true)
		r.JitterFactor = float("jitterFactor", jobgraphv1.DefaultJitterFactor, 0, 1, "0.0..1.0")
		r.Attempts = integer("attempts", jobgraphv1.DefaultExponentialAttempts)
		if r.MaxBackoff < r.InitialBackoff {
			at := n
			if e, ok := m["maxBackoff"]; ok {
				at = e.val
			}
			p.errAt(at, "restart.maxBackoff: %v is less than initialBackoff %v: raise maxBackoff", r.MaxBackoff, r.InitialBackoff)
		}
	}
	return r
}

func paramList(ps []string) string {
	if len(ps) == 0 {
		return "none"
	}
	return strings.Join(ps, ", ")
}
