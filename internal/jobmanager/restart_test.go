package jobmanager

import (
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/jobspec"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestNoRestart(t *testing.T) {
	s := newRestartStrategy(jobspec.Restart{Strategy: jobspec.RestartNone}, nil)
	if _, ok, reason := s.onFailure(t0); ok || !strings.Contains(reason, "none") {
		t.Fatalf("none restarted (%v, %q)", ok, reason)
	}
}

func TestFixedDelay(t *testing.T) {
	s := newRestartStrategy(jobspec.Restart{Strategy: jobspec.RestartFixedDelay, Attempts: 2, Delay: 3 * time.Second}, nil)
	for i := 0; i < 2; i++ {
		d, ok, _ := s.onFailure(t0)
		if !ok || d != 3*time.Second {
			t.Fatalf("attempt %d: %v %v", i+1, d, ok)
		}
	}
	if _, ok, reason := s.onFailure(t0); ok || !strings.Contains(reason, "all 2 restart attempts used") {
		t.Fatalf("third failure restarted (%v, %q)", ok, reason)
	}
}

func TestFailureRate(t *testing.T) {
	s := newRestartStrategy(jobspec.Restart{Strategy: jobspec.RestartFailureRate, MaxFailuresPerInterval: 2,
		FailureRateInterval: time.Minute, Delay: time.Second}, nil)
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
		if _, ok, reason := s.onFailure(t0.Add(st.at)); ok != st.ok {
			t.Fatalf("step %d at %s: ok=%v want %v (%s)", i, st.at, ok, st.ok, reason)
		}
	}
}

func TestExponentialDelayGrowsCapsAndResets(t *testing.T) {
	cfg := jobspec.Restart{Strategy: jobspec.RestartExponentialDelay, InitialBackoff: time.Second, MaxBackoff: 5 * time.Second,
		BackoffMultiplier: 2, ResetBackoffThreshold: time.Hour, JitterFactor: 0}
	s := newRestartStrategy(cfg, func() float64 { return 0.5 })
	now := t0
	var got []time.Duration
	for i := 0; i < 5; i++ {
		d, ok, _ := s.onFailure(now)
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
	if d, _, _ := s.onFailure(now.Add(2 * time.Hour)); d != time.Second {
		t.Fatalf("after a healthy period the delay is %s, want 1s", d)
	}
}

func TestExponentialDelayJitterAndAttempts(t *testing.T) {
	cfg := jobspec.Restart{Strategy: jobspec.RestartExponentialDelay, InitialBackoff: 10 * time.Second, MaxBackoff: time.Minute,
		BackoffMultiplier: 1.5, ResetBackoffThreshold: time.Hour, JitterFactor: 0.1, Attempts: 2}
	r := 0.0
	s := newRestartStrategy(cfg, func() float64 { return r })
	if d, _, _ := s.onFailure(t0); d != 9*time.Second { // -10%
		t.Fatalf("jitter low: %s", d)
	}
	r = 0.999999
	if d, _, _ := s.onFailure(t0.Add(time.Second)); d < 16*time.Second || d > 16500*time.Millisecond { // 15s +10%
		t.Fatalf("jitter high: %s", d)
	}
	if _, ok, reason := s.onFailure(t0.Add(2 * time.Second)); ok || !strings.Contains(reason, "all 2 restart attempts used") {
		t.Fatalf("third failure: %v %q", ok, reason)
	}
}
