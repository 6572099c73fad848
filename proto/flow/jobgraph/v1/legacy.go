package jobgraphv1

// This file is written by hand: the only reader of the legacy JSON
// sections (JobGraph fields state_backend, checkpoints and restart), which
// graphs built before the typed fields carry: job records of older
// JobManagers and the graph inside older checkpoint and savepoint
// _metadata. The format is frozen: the JSON that pkg/jobspec wrote, every
// default applied, durations in integer nanoseconds. A key that is absent
// decodes as it always did (the defaults below for checkpoints and the
// state backend type; zero for everything else), and every value then
// becomes an explicitly set field of the typed message, so the defaults of
// the typed form never change what an old graph meant.

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
)

type legacyStateBackend struct {
	Type           string `json:"type"`
	BlockCacheSize int64  `json:"blockCacheSize"`
	MemtableSize   int64  `json:"memtableSize"`
	Compression    string `json:"compression"`
}

type legacyCheckpoints struct {
	Interval          time.Duration `json:"interval"`
	Mode              string        `json:"mode"`
	Unaligned         bool          `json:"unaligned"`
	AlignedTimeout    time.Duration `json:"alignedTimeout"`
	Timeout           time.Duration `json:"timeout"`
	MinPause          time.Duration `json:"minPause"`
	MaxConcurrent     int32         `json:"maxConcurrent"`
	TolerableFailures int32         `json:"tolerableFailures"`
	Storage           string        `json:"storage"`
	Retain            int32         `json:"retain"`
	Incremental       bool          `json:"incremental"`
	RetainOnCancel    bool          `json:"retainOnCancel"`
}

type legacyRestart struct {
	Strategy               string        `json:"strategy"`
	Attempts               int32         `json:"attempts"`
	Delay                  time.Duration `json:"delay"`
	MaxFailuresPerInterval int32         `json:"maxFailuresPerInterval"`
	FailureRateInterval    time.Duration `json:"failureRateInterval"`
	InitialBackoff         time.Duration `json:"initialBackoff"`
	MaxBackoff             time.Duration `json:"maxBackoff"`
	BackoffMultiplier      float64       `json:"backoffMultiplier"`
	ResetBackoffThreshold  time.Duration `json:"resetBackoffThreshold"`
	JitterFactor           float64       `json:"jitterFactor"`
}

func decodeLegacy(section string, b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("job graph %s: legacy JSON section: %v: resubmit the job from its spec: %w", section, err, ErrInvalidConfig)
	}
	return nil
}

func legacyStateBackendConfig(b []byte) (*StateBackendConfig, error) {
	l := legacyStateBackend{Type: DefaultStateBackend}
	if err := decodeLegacy("state backend", b, &l); err != nil {
		return nil, err
	}
	return &StateBackendConfig{Type: l.Type, BlockCacheSize: l.BlockCacheSize, MemtableSize: l.MemtableSize, Compression: l.Compression}, nil
}

func legacyCheckpointConfig(b []byte) (*CheckpointConfig, error) {
	l := legacyCheckpoints{Mode: "exactly_once", Timeout: DefaultCheckpointTimeout, MaxConcurrent: DefaultMaxConcurrentCheckpoints,
		TolerableFailures: DefaultTolerableCheckpointFailures, Retain: DefaultRetainedCheckpoints}
	if err := decodeLegacy("checkpoints", b, &l); err != nil {
		return nil, err
	}
	c := &CheckpointConfig{
		Interval: durationpb.New(l.Interval), Unaligned: l.Unaligned, AlignedTimeout: durationpb.New(l.AlignedTimeout),
		Timeout: durationpb.New(l.Timeout), MinPause: durationpb.New(l.MinPause), MaxConcurrent: &l.MaxConcurrent,
		TolerableFailures: &l.TolerableFailures, Storage: l.Storage, Retain: &l.Retain, Incremental: l.Incremental,
		RetainOnCancel: l.RetainOnCancel,
	}
	switch l.Mode {
	case "", "exactly_once":
		c.Mode = CheckpointMode_CHECKPOINT_MODE_EXACTLY_ONCE
	case "at_least_once":
		c.Mode = CheckpointMode_CHECKPOINT_MODE_AT_LEAST_ONCE
	default:
		return nil, fmt.Errorf("job graph checkpoints: mode %q is unknown: use exactly_once or at_least_once: %w", l.Mode, ErrInvalidConfig)
	}
	return c, nil
}

func legacyRestartConfig(b []byte) (*RestartConfig, error) {
	l := legacyRestart{Strategy: "none"}
	if err := decodeLegacy("restart", b, &l); err != nil {
		return nil, err
	}
	c := &RestartConfig{}
	switch l.Strategy {
	case "", "none":
		c.Strategy = RestartStrategy_RESTART_STRATEGY_NONE
	case "fixed_delay":
		c.Strategy = RestartStrategy_RESTART_STRATEGY_FIXED_DELAY
		c.Attempts, c.Delay = &l.Attempts, durationpb.New(l.Delay)
	case "failure_rate":
		c.Strategy = RestartStrategy_RESTART_STRATEGY_FAILURE_RATE
		c.MaxFailuresPerInterval, c.FailureRateInterval, c.Delay = &l.MaxFailuresPerInterval, durationpb.New(l.FailureRateInterval), durationpb.New(l.Delay)
	case "exponential_delay":
		c.Strategy = RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY
		c.InitialBackoff, c.MaxBackoff, c.ResetBackoffThreshold = durationpb.New(l.InitialBackoff), durationpb.New(l.MaxBackoff), durationpb.New(l.ResetBackoffThreshold)
		c.BackoffMultiplier, c.JitterFactor, c.Attempts = &l.BackoffMultiplier, &l.JitterFactor, &l.Attempts
	default:
		return nil, fmt.Errorf("job graph restart: strategy %q is unknown: use none, fixed_delay, failure_rate or exponential_delay: %w", l.Strategy, ErrInvalidConfig)
	}
	return c, nil
}
