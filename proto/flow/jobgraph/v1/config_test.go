package jobgraphv1_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

var d = durationpb.New

// effective resolves all three sections of g.
func effective(t *testing.T, g *jobgraphv1.JobGraph) (*jobgraphv1.StateBackendConfig, *jobgraphv1.CheckpointConfig, *jobgraphv1.RestartConfig) {
	t.Helper()
	sb, err := g.EffectiveStateBackendConfig()
	if err != nil {
		t.Fatal(err)
	}
	ck, err := g.EffectiveCheckpointConfig()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := g.EffectiveRestartConfig()
	if err != nil {
		t.Fatal(err)
	}
	return sb, ck, rs
}

func same(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s:\n got  %v\n want %v", what, prototext.Format(got), prototext.Format(want))
	}
}

// A graph without any job-level section gets the documented defaults.
func TestEffectiveConfigDefaults(t *testing.T) {
	for name, g := range map[string]*jobgraphv1.JobGraph{
		"nil graph": nil, "empty graph": {},
		"empty typed":  {StateBackendConfig: &jobgraphv1.StateBackendConfig{}, CheckpointConfig: &jobgraphv1.CheckpointConfig{}, RestartConfig: &jobgraphv1.RestartConfig{}},
		"empty legacy": {StateBackend: []byte(`{}`), Checkpoints: []byte(`{}`), Restart: []byte(`{}`)},
	} {
		t.Run(name, func(t *testing.T) {
			sb, ck, rs := effective(t, g)
			same(t, "state backend", sb, &jobgraphv1.StateBackendConfig{Type: "heap"})
			same(t, "checkpoints", ck, &jobgraphv1.CheckpointConfig{
				Interval: d(0), Mode: jobgraphv1.CheckpointMode_CHECKPOINT_MODE_EXACTLY_ONCE, AlignedTimeout: d(0),
				Timeout: d(10 * time.Minute), MinPause: d(0), MaxConcurrent: proto.Int32(1), TolerableFailures: proto.Int32(3),
				Retain: proto.Int32(1)})
			same(t, "restart", rs, &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_NONE})
		})
	}
}

// The legacy JSON form and the typed form of the same configuration
// resolve to the same typed configuration: full sections as pkg/jobspec
// wrote them, and partial ones as tests and hand-built graphs wrote them
// (absent keys take the defaults).
func TestLegacyAndTypedConfigResolveIdentically(t *testing.T) {
	cases := []struct {
		name   string
		legacy *jobgraphv1.JobGraph
		typed  *jobgraphv1.JobGraph
	}{{
		name: "full sections (keyed-count spec)",
		legacy: &jobgraphv1.JobGraph{
			StateBackend: []byte(`{"type":"pebble","blockCacheSize":67108864,"memtableSize":4194304,"compression":"zstd"}`),
			Checkpoints: []byte(`{"interval":1000000000,"mode":"exactly_once","unaligned":true,"alignedTimeout":100000000,"timeout":60000000000,` +
				`"minPause":500000000,"maxConcurrent":2,"tolerableFailures":0,"storage":"s3://bucket/flow","retain":3,"incremental":true,"retainOnCancel":true}`),
			Restart: []byte(`{"strategy":"failure_rate","delay":10000000000,"maxFailuresPerInterval":3,"failureRateInterval":300000000000}`),
		},
		typed: &jobgraphv1.JobGraph{
			StateBackendConfig: &jobgraphv1.StateBackendConfig{Type: "pebble",
				BlockCacheSize: 64 << 20, MemtableSize: 4 << 20, Compression: "zstd"},
			CheckpointConfig: &jobgraphv1.CheckpointConfig{Interval: d(time.Second), Mode: jobgraphv1.CheckpointMode_CHECKPOINT_MODE_EXACTLY_ONCE,
				Unaligned: true, AlignedTimeout: d(100 * time.Millisecond), Timeout: d(time.Minute), MinPause: d(500 * time.Millisecond),
				MaxConcurrent: proto.Int32(2), TolerableFailures: proto.Int32(0), Storage: "s3://bucket/flow", Retain: proto.Int32(3),
				Incremental: true, RetainOnCancel: true},
			RestartConfig: &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FAILURE_RATE,
				Delay: d(10 * time.Second), MaxFailuresPerInterval: proto.Int32(3), FailureRateInterval: d(5 * time.Minute)},
		},
	}, {
		name: "exponential delay, at least once",
		legacy: &jobgraphv1.JobGraph{
			StateBackend: []byte(`{"type":"heap"}`),
			Checkpoints: []byte(`{"interval":30000000000,"mode":"at_least_once","unaligned":false,"alignedTimeout":0,"timeout":600000000000,` +
				`"minPause":0,"maxConcurrent":1,"tolerableFailures":3,"retain":1,"incremental":false,"retainOnCancel":false}`),
			Restart: []byte(`{"strategy":"exponential_delay","attempts":10,"initialBackoff":100000000,"maxBackoff":10000000000,` +
				`"backoffMultiplier":2,"resetBackoffThreshold":1800000000000,"jitterFactor":0.25}`),
		},
		typed: &jobgraphv1.JobGraph{
			StateBackendConfig: &jobgraphv1.StateBackendConfig{Type: "heap"},
			CheckpointConfig: &jobgraphv1.CheckpointConfig{Interval: d(30 * time.Second), Mode: jobgraphv1.CheckpointMode_CHECKPOINT_MODE_AT_LEAST_ONCE,
				AlignedTimeout: d(0), Timeout: d(10 * time.Minute), MinPause: d(0), MaxConcurrent: proto.Int32(1),
				TolerableFailures: proto.Int32(3), Retain: proto.Int32(1)},
			RestartConfig: &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY,
				Attempts: proto.Int32(10), InitialBackoff: d(100 * time.Millisecond), MaxBackoff: d(10 * time.Second),
				BackoffMultiplier: proto.Float64(2), ResetBackoffThreshold: d(30 * time.Minute), JitterFactor: proto.Float64(0.25)},
		},
	}, {
		name: "partial sections take the defaults",
		legacy: &jobgraphv1.JobGraph{
			Checkpoints: []byte(`{"interval":50000000,"retain":2}`),
			Restart:     []byte(`{"strategy":"fixed_delay","attempts":3,"delay":50000000}`),
		},
		typed: &jobgraphv1.JobGraph{
			CheckpointConfig: &jobgraphv1.CheckpointConfig{Interval: d(50 * time.Millisecond), Retain: proto.Int32(2)},
			RestartConfig: &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY,
				Attempts: proto.Int32(3), Delay: d(50 * time.Millisecond)},
		},
	}, {
		name: "unlimited fixed delay (a spec with checkpoints and no restart section)",
		legacy: &jobgraphv1.JobGraph{
			Restart: []byte(`{"strategy":"fixed_delay","attempts":2147483647,"delay":1000000000}`),
		},
		typed: &jobgraphv1.JobGraph{
			RestartConfig: &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY,
				Attempts: proto.Int32(math.MaxInt32)},
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lsb, lck, lrs := effective(t, tc.legacy)
			tsb, tck, trs := effective(t, tc.typed)
			same(t, "state backend", lsb, tsb)
			same(t, "checkpoints", lck, tck)
			same(t, "restart", lrs, trs)
		})
	}
}

// An absent key of a legacy section means what it meant when the section
// was written (pkg/jobspec omitted zero restart parameters), not the
// default of the typed form's unset field.
func TestLegacyAbsentKeysKeepTheirMeaning(t *testing.T) {
	g := &jobgraphv1.JobGraph{Restart: []byte(`{"strategy":"fixed_delay","attempts":5}`)}
	_, _, rs := effective(t, g)
	if rs.GetDelay().AsDuration() != 0 {
		t.Errorf("legacy fixed_delay without delay: delay %v, want 0 (spec delay: 0s)", rs.GetDelay().AsDuration())
	}
	g = &jobgraphv1.JobGraph{Restart: []byte(`{"strategy":"exponential_delay","attempts":3,"initialBackoff":1000000000,` +
		`"maxBackoff":60000000000,"backoffMultiplier":2,"resetBackoffThreshold":3600000000000}`)}
	_, _, rs = effective(t, g)
	if rs.JitterFactor == nil || rs.GetJitterFactor() != 0 {
		t.Errorf("legacy exponential_delay without jitterFactor: jitter %v, want 0 (spec jitterFactor: 0)", rs.JitterFactor)
	}
}

// The typed field wins over the legacy bytes; resolving never modifies the
// graph (it is shared by concurrent readers).
func TestTypedConfigWinsAndGraphIsUnchanged(t *testing.T) {
	g := &jobgraphv1.JobGraph{
		Checkpoints:      []byte(`{"interval":1000000000,"mode":"at_least_once"}`),
		CheckpointConfig: &jobgraphv1.CheckpointConfig{Interval: d(2 * time.Second)},
		Restart:          []byte(`{"strategy":"none"}`),
		RestartConfig:    &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY},
	}
	before := proto.Clone(g)
	_, ck, rs := effective(t, g)
	if ck.GetInterval().AsDuration() != 2*time.Second || ck.GetMode() != jobgraphv1.CheckpointMode_CHECKPOINT_MODE_EXACTLY_ONCE {
		t.Errorf("checkpoints %v: want the typed field's", ck)
	}
	if rs.GetStrategy() != jobgraphv1.RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY || rs.GetMaxBackoff().AsDuration() != 5*time.Minute {
		t.Errorf("restart %v: want the typed field's with its defaults", rs)
	}
	ck.Interval = d(time.Hour)
	if !proto.Equal(g, before) {
		t.Errorf("resolving changed the graph: %v", g)
	}
}

// Only the strategy's parameters survive resolution.
func TestRestartConfigKeepsOnlyTheStrategysParameters(t *testing.T) {
	g := &jobgraphv1.JobGraph{RestartConfig: &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY,
		Attempts: proto.Int32(2), JitterFactor: proto.Float64(0.5), MaxBackoff: d(time.Minute)}}
	_, _, rs := effective(t, g)
	same(t, "restart", rs, &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY,
		Attempts: proto.Int32(2), Delay: d(time.Second)})
}

func TestEffectiveConfigErrors(t *testing.T) {
	for name, g := range map[string]*jobgraphv1.JobGraph{
		"broken legacy checkpoints JSON":   {Checkpoints: []byte("{")},
		"broken legacy state backend JSON": {StateBackend: []byte(`{"type":1}`)},
		"broken legacy restart JSON":       {Restart: []byte(`[]`)},
		"unknown legacy mode":              {Checkpoints: []byte(`{"mode":"twice"}`)},
		"unknown legacy strategy":          {Restart: []byte(`{"strategy":"always"}`)},
		"unknown mode":                     {CheckpointConfig: &jobgraphv1.CheckpointConfig{Mode: 9}},
		"unknown strategy":                 {RestartConfig: &jobgraphv1.RestartConfig{Strategy: 9}},
		"negative size":                    {StateBackendConfig: &jobgraphv1.StateBackendConfig{MemtableSize: -1}},
		"negative interval":                {CheckpointConfig: &jobgraphv1.CheckpointConfig{Interval: d(-time.Second)}},
		"negative legacy timeout":          {Checkpoints: []byte(`{"timeout":-1}`)},
		"malformed duration":               {CheckpointConfig: &jobgraphv1.CheckpointConfig{MinPause: &durationpb.Duration{Seconds: 1, Nanos: -1}}},
		"negative restart delay": {RestartConfig: &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FAILURE_RATE,
			Delay: d(-time.Second)}},
		"negative backoff": {RestartConfig: &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY,
			MaxBackoff: d(-time.Second)}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err1 := g.EffectiveStateBackendConfig()
			_, err2 := g.EffectiveCheckpointConfig()
			_, err3 := g.EffectiveRestartConfig()
			err := errors.Join(err1, err2, err3)
			if !errors.Is(err, jobgraphv1.ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
			t.Log(err)
		})
	}
}
