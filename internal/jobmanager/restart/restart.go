package restart

import (
	"fmt"
	"math"
	"time"

	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Strategy decides, for each failure of a job, whether to restart it
// and after what delay. It is pure: time and randomness are inputs.
type Strategy interface {
	// OnFailure records a failure at now. ok=false means the job must fail;
	// reason then says why (for the job's failure message).
	OnFailure(now time.Time) (delay time.Duration, ok bool, reason string)
}

// For builds the strategy of a job's restart
// configuration (the graph's EffectiveRestartConfig: every parameter of
// the strategy set). random returns a number in [0, 1) (jitter).
func For(r *jobgraphv1.RestartConfig, random func() float64) Strategy {
	switch r.GetStrategy() {
	case jobgraphv1.RestartStrategy_RESTART_STRATEGY_FIXED_DELAY:
		return &fixedDelay{attempts: int(r.GetAttempts()), delay: r.GetDelay().AsDuration()}
	case jobgraphv1.RestartStrategy_RESTART_STRATEGY_FAILURE_RATE:
		return &failureRate{max: int(r.GetMaxFailuresPerInterval()), interval: r.GetFailureRateInterval().AsDuration(), delay: r.GetDelay().AsDuration()}
	case jobgraphv1.RestartStrategy_RESTART_STRATEGY_EXPONENTIAL_DELAY:
		return &exponentialDelay{
			initial: r.GetInitialBackoff().AsDuration(), max: r.GetMaxBackoff().AsDuration(), multiplier: r.GetBackoffMultiplier(),
			reset: r.GetResetBackoffThreshold().AsDuration(), jitter: r.GetJitterFactor(), maxAttempts: int(r.GetAttempts()),
			random: random,
		}
	}
	return noRestart{}
}

type noRestart struct{}

func (noRestart) OnFailure(time.Time) (time.Duration, bool, string) {
	return 0, false, "restart strategy none"
}

// fixedDelay restarts up to attempts times, waiting delay each time.
type fixedDelay struct {
	attempts int
	delay    time.Duration
	failures int
}

func (s *fixedDelay) OnFailure(time.Time) (time.Duration, bool, string) {
	s.failures++
	if s.failures > s.attempts {
		return 0, false, fmt.Sprintf("restart strategy fixed_delay: all %d restart attempts used", s.attempts)
	}
	return s.delay, true, ""
}

// failureRate restarts unless more than max failures happened within the
// last interval.
type failureRate struct {
	max      int
	interval time.Duration
	delay    time.Duration
	times    []time.Time
}

func (s *failureRate) OnFailure(now time.Time) (time.Duration, bool, string) {
	cut := 0
	for cut < len(s.times) && now.Sub(s.times[cut]) >= s.interval {
		cut++
	}
	s.times = append(s.times[cut:], now)
	if len(s.times) > s.max {
		return 0, false, fmt.Sprintf("restart strategy failure_rate: %d failures within %s (at most %d allowed)", len(s.times), s.interval, s.max)
	}
	return s.delay, true, ""
}

// exponentialDelay multiplies the delay after each failure up to a
// maximum, with random jitter, and starts over once the job ran without
// failure for the reset threshold.
type exponentialDelay struct {
	initial, max time.Duration
	multiplier   float64
	reset        time.Duration // a healthy period this long starts over
	jitter       float64
	maxAttempts  int // 0: unlimited
	random       func() float64

	current  time.Duration
	last     time.Time
	attempts int
}

func (s *exponentialDelay) OnFailure(now time.Time) (time.Duration, bool, string) {
	if s.current == 0 || (!s.last.IsZero() && now.Sub(s.last) >= s.reset) {
		s.current = s.initial
		s.attempts = 0
	}
	s.last = now
	s.attempts++
	if s.maxAttempts > 0 && s.attempts > s.maxAttempts {
		return 0, false, fmt.Sprintf("restart strategy exponential_delay: all %d restart attempts used", s.maxAttempts)
	}
	d := s.current
	if j := s.jitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*s.random()-1)))
	}
	next := time.Duration(math.Min(float64(s.current)*s.multiplier, float64(s.max)))
	s.current = max(next, s.initial)
	return d, true, ""
}
