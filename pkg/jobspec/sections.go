package jobspec

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The job-level sections are stored in the JobGraph's bytes fields
// (state_backend, checkpoints, restart) as the JSON encoding of these
// structs, with every default applied. Durations are encoded as integer
// nanoseconds (encoding/json's time.Duration); decode them with
// DecodeStateBackend, DecodeCheckpoints and DecodeRestart.

// StateBackend is the stateBackend section.
type StateBackend struct {
	// Type is "heap" (default) or "pebble".
	Type string `json:"type"`
	// BlockCacheSize is Pebble's block cache in bytes (0: Pebble's default).
	BlockCacheSize int64 `json:"blockCacheSize,omitempty"`
	// MemtableSize is Pebble's memtable size in bytes (0: Pebble's default).
	MemtableSize int64 `json:"memtableSize,omitempty"`
	// Compression of Pebble's SST blocks: none, snappy (default) or zstd.
	Compression string `json:"compression,omitempty"`
}

// Checkpoint modes.
const (
	ModeExactlyOnce = "exactly_once"
	ModeAtLeastOnce = "at_least_once"
)

// Checkpoints is the checkpoints section.
type Checkpoints struct {
	// Interval between checkpoint triggers; 0 (default) disables checkpoints.
	Interval time.Duration `json:"interval"`
	// Mode is exactly_once (default) or at_least_once.
	Mode string `json:"mode"`
	// Unaligned checkpoints (exactly_once only).
	Unaligned bool `json:"unaligned"`
	// AlignedTimeout: start aligned and switch to unaligned after this long
	// (needs Unaligned; 0 = unaligned from the start).
	AlignedTimeout time.Duration `json:"alignedTimeout"`
	// Timeout after which a pending checkpoint is aborted (default 10m).
	Timeout time.Duration `json:"timeout"`
	// MinPause between the end of one checkpoint and the next trigger.
	MinPause time.Duration `json:"minPause"`
	// MaxConcurrent checkpoints in flight (default 1).
	MaxConcurrent int `json:"maxConcurrent"`
	// TolerableFailures: consecutive failed checkpoints before the job fails
	// (default 3).
	TolerableFailures int `json:"tolerableFailures"`
	// Storage is the checkpoint storage URL (file://, s3://, gs://,
	// azblob://, mem://); empty uses the cluster's default.
	Storage string `json:"storage,omitempty"`
	// Retain is the number of completed checkpoints kept (default 1).
	Retain int `json:"retain"`
	// Incremental uploads only new SST files (pebble backend).
	Incremental bool `json:"incremental"`
	// RetainOnCancel keeps the checkpoints when the job is canceled.
	RetainOnCancel bool `json:"retainOnCancel"`
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
	Strategy string `json:"strategy"`
	// Attempts: fixed_delay (default 1); exponential_delay (default
	// unlimited: math.MaxInt32).
	Attempts int `json:"attempts,omitempty"`
	// Delay between attempts: fixed_delay and failure_rate (default 1s).
	Delay time.Duration `json:"delay,omitempty"`
	// failure_rate: fail the job after more than MaxFailuresPerInterval
	// (default 1) failures within FailureRateInterval (default 1m).
	MaxFailuresPerInterval int           `json:"maxFailuresPerInterval,omitempty"`
	FailureRateInterval    time.Duration `json:"failureRateInterval,omitempty"`
	// exponential_delay: the delay starts at InitialBackoff (default 1s),
	// is multiplied by BackoffMultiplier (default 1.5) after each failure up
	// to MaxBackoff (default 5m), with +-JitterFactor (default 0.1) random
	// jitter, and resets after ResetBackoffThreshold (default 1h) without
	// failure.
	InitialBackoff        time.Duration `json:"initialBackoff,omitempty"`
	MaxBackoff            time.Duration `json:"maxBackoff,omitempty"`
	BackoffMultiplier     float64       `json:"backoffMultiplier,omitempty"`
	ResetBackoffThreshold time.Duration `json:"resetBackoffThreshold,omitempty"`
	JitterFactor          float64       `json:"jitterFactor,omitempty"`
}

// DefaultRestart is the strategy of a spec without a restart section:
// like Flink, fixed_delay with unlimited attempts and 1s delay when
// checkpoints are enabled, none otherwise.
func DefaultRestart(checkpointsEnabled bool) Restart {
	if checkpointsEnabled {
		return Restart{Strategy: RestartFixedDelay, Attempts: math.MaxInt32, Delay: time.Second}
	}
	return Restart{Strategy: RestartNone}
}

// DecodeStateBackend decodes JobGraph.state_backend; empty input gives the
// defaults.
func DecodeStateBackend(b []byte) (StateBackend, error) {
	s := StateBackend{Type: "heap"}
	return s, decodeSection("stateBackend", b, &s)
}

// DecodeCheckpoints decodes JobGraph.checkpoints; empty input gives the
// defaults (checkpoints disabled).
func DecodeCheckpoints(b []byte) (Checkpoints, error) {
	c := defaultCheckpoints()
	return c, decodeSection("checkpoints", b, &c)
}

// DecodeRestart decodes JobGraph.restart; empty input gives strategy none.
func DecodeRestart(b []byte) (Restart, error) {
	r := DefaultRestart(false)
	return r, decodeSection("restart", b, &r)
}

func decodeSection(name string, b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode job graph %s section: %w", name, err)
	}
	return nil
}

func defaultCheckpoints() Checkpoints {
	return Checkpoints{Mode: ModeExactlyOnce, Timeout: 10 * time.Minute, MaxConcurrent: 1, TolerableFailures: 3, Retain: 1}
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
	s := StateBackend{Type: "heap"}
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
		r.Attempts = integer("attempts", 1)
		r.Delay = dur("delay", time.Second, false)
	case RestartFailureRate:
		r.MaxFailuresPerInterval = integer("maxFailuresPerInterval", 1)
		r.FailureRateInterval = dur("failureRateInterval", time.Minute, true)
		r.Delay = dur("delay", time.Second, false)
	case RestartExponentialDelay:
		r.InitialBackoff = dur("initialBackoff", time.Second, true)
		r.MaxBackoff = dur("maxBackoff", 5*time.Minute, true)
		r.BackoffMultiplier = float("backoffMultiplier", 1.5, 1, math.MaxFloat64, "a factor of at least 1.0")
		r.ResetBackoffThreshold = dur("resetBackoffThreshold", time.Hour, true)
		r.JitterFactor = float("jitterFactor", 0.1, 0, 1, "0.0..1.0")
		r.Attempts = integer("attempts", math.MaxInt32)
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
