package restart

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var dur = durationpb.New

func TestNoRestart(t *testing.T) {
	s := For(&jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_NONE}, nil)
	if _, ok, reason := s.OnFailure(t0); ok || !strings.Contains(reason, "none") {
		t.Fatalf("none restarted (%v, %q)", ok, reason)
	}
}

func TestFixedDelay(t *testing.T) {
	s := For(&jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY, Attempts: proto.Int32(2), Delay: dur(3 * time.Second)}, nil)
	for i := 0; i < 2; i++ {
		d, ok, _ := s.OnFailure(t0)
		if !ok || d != 3*time.Second {
			t.Fatalf("attempt %d: %v %v", i+1, d, ok)
		}
	}
	if _, ok, reason := s.OnFailure(t0); ok || !strings.Contains(reason, "all 2 restart attempts used") {
		t.Fatalf("third failure restarted (%v, %q)", ok, reason)
	}
}

func TestFailureRate(t *testing.T) {
	s := For(&jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_FAILURE_RATE, MaxFailuresPerInterval: proto.Int32(2),
		FailureRateInterval: dur(time.Minute), Delay: dur(time.Second)}, nil)
	steps := []struct {
		at time.Duration
		ok bool
	}{
		{0, true}, {10 * time.Second, true}, // two within a minute: fine
		{20 * time.Second, false}, // three within a minute
		{90 * time.Second, true},  // 0s, 10s and 20s fell out of the window
		{95 * time.Second, true},  // two within (35s, 95s]
		{99 * time.Second, false}, // three within (39s, 99s]
	}
	for i, st := range steps {
		if _, ok, reason := s.OnFailure(t0.Add(st.at)); ok != st.ok {
			t.Fatalf("step %d at %s: ok=%v want %v (%s)", i, st.at, ok, st.ok, reason)
		}
	}
}

func TestExponentialDelayGrowsCapsAndResets(t *testing.T) {
	cfg := &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY, InitialBackoff: dur(time.Second), MaxBackoff: dur(5 * time.Second),
		BackoffMultiplier: proto.Float64(2), ResetBackoffThreshold: dur(time.Hour), JitterFactor: proto.Float64(0)}
	s := For(cfg, func() float64 { return 0.5 })
	now := t0
	var got []time.Duration
	for i := 0; i < 5; i++ {
		d, ok, _ := s.OnFailure(now)
		if !ok {
			t.Fatal("exponential delay without attempt limit gave up")
		}
		got = append(got, d)
		now = now.Add(d + time.Second)
	}
	want := []time.Duration{1, 2, 4, 5, 5}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v seconds", got, want)
		}
	}
	// A healthy hour resets the backoff.
	if d, _, _ := s.OnFailure(now.Add(2 * time.Hour)); d != time.Second {
		t.Fatalf("after a healthy period the delay is %s, want 1s", d)
	}
}

func TestExponentialDelayJitterAndAttempts(t *testing.T) {
	cfg := &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY, InitialBackoff: dur(10 * time.Second), MaxBackoff: dur(time.Minute),
		BackoffMultiplier: proto.Float64(1.5), ResetBackoffThreshold: dur(time.Hour), JitterFactor: proto.Float64(0.1), Attempts: proto.Int32(2)}
	r := 0.0
	s := For(cfg, func() float64 { return r })
	if d, _, _ := s.OnFailure(t0); d != 9*time.Second { // -10%
		t.Fatalf("jitter low: %s", d)
	}
	r = 0.999999
	if d, _, _ := s.OnFailure(t0.Add(time.Second)); d < 16*time.Second || d > 16500*time.Millisecond { // 15s +10%
		t.Fatalf("jitter high: %s", d)
	}
	if _, ok, reason := s.OnFailure(t0.Add(2 * time.Second)); ok || !strings.Contains(reason, "all 2 restart attempts used") {
		t.Fatalf("third failure: %v %q", ok, reason)
	}
}

// A job stored by an older JobManager (legacy JSON restart section)
// restarts exactly as the same job with a typed RestartConfig.
func TestRestartStrategyOfLegacyAndTypedGraphs(t *testing.T) {
	legacy := &jobgraphv1.JobGraph{Restart: []byte(`{"strategy":"exponential_delay","attempts":3,"initialBackoff":1000000000,` +
		`"maxBackoff":4000000000,"backoffMultiplier":2,"resetBackoffThreshold":3600000000000}`)} // jitterFactor 0: omitted
	typed := &jobgraphv1.JobGraph{RestartConfig: &jobgraphv1.RestartConfig{Strategy: jobgraphv1.RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY,
		Attempts: proto.Int32(3), InitialBackoff: dur(time.Second), MaxBackoff: dur(4 * time.Second), BackoffMultiplier: proto.Float64(2),
		ResetBackoffThreshold: dur(time.Hour), JitterFactor: proto.Float64(0)}}
	var runs [2][]string
	for i, g := range []*jobgraphv1.JobGraph{legacy, typed} {
		r, err := g.EffectiveRestartConfig()
		if err != nil {
			t.Fatal(err)
		}
		s := For(r, func() float64 { return 0 })
		for k := 0; k < 4; k++ {
			d, ok, reason := s.OnFailure(t0.Add(time.Duration(k) * time.Minute))
			runs[i] = append(runs[i], fmt.Sprintf("%v %v %s", d, ok, reason))
		}
	}
	want := []string{"1s true ", "2s true ", "4s true ", "0s false restart strategy exponential_delay: all 3 restart attempts used"}
	for i, name := range []string{"legacy", "typed"} {
		if strings.Join(runs[i], "|") != strings.Join(want, "|") {
			t.Errorf("%s graph: %q, want %q", name, runs[i], want)
		}
	}
}
