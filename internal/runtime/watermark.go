package runtime

import (
	"fmt"
	"math"
	"time"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// wmGenerator implements a source vertex's WatermarkStrategy: optional
// timestamp extraction, bounded out-of-orderness watermarks emitted
// periodically, and idleness after a period without records.
type wmGenerator struct {
	tsProg      *expression.Program
	env         *expression.Env
	ooo         int64
	interval    time.Duration
	idleTimeout time.Duration

	maxTs      int64
	sawRecord  bool // since the last tick
	lastActive time.Time
	next       time.Time
}

func newWMGenerator(s *jobgraphv1.WatermarkStrategy) (*wmGenerator, error) {
	if s == nil {
		return nil, nil
	}
	if s.GetOutOfOrdernessMs() < 0 || s.GetIntervalMs() < 0 || s.GetIdleTimeoutMs() < 0 {
		return nil, fmt.Errorf("out_of_orderness_ms, interval_ms and idle_timeout_ms must not be negative (got %d, %d, %d)",
			s.GetOutOfOrdernessMs(), s.GetIntervalMs(), s.GetIdleTimeoutMs())
	}
	g := &wmGenerator{ooo: s.GetOutOfOrdernessMs(), interval: time.Duration(s.GetIntervalMs()) * time.Millisecond,
		idleTimeout: time.Duration(s.GetIdleTimeoutMs()) * time.Millisecond, maxTs: api.NoTimestamp}
	if g.interval == 0 {
		g.interval = DefaultWatermarkInterval
	}
	if s.GetTimestamp() != "" {
		p, err := expression.Compile(s.GetTimestamp())
		if err != nil {
			return nil, fmt.Errorf("timestamp: %w", err)
		}
		g.tsProg, g.env = p, expression.NewEnv()
	}
	return g, nil
}

func (g *wmGenerator) start(now time.Time) {
	g.lastActive = now
	g.next = now.Add(g.interval)
}

func (g *wmGenerator) nextTick() time.Time {
	if g == nil {
		return time.Time{}
	}
	return g.next
}

// timestamp evaluates the timestamp expression on r.
func (g *wmGenerator) timestamp(r *api.Record) (int64, error) {
	if err := g.env.Reset(r.Value, r.Timestamp, r.Key); err != nil {
		return 0, err
	}
	v, err := g.tsProg.Eval(g.env)
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case float64:
		if x >= math.MinInt64 && x <= math.MaxInt64 && !math.IsNaN(x) {
			return int64(x), nil
		}
	}
	return 0, fmt.Errorf("timestamp expression %q gave %v (%T), want milliseconds as a number", g.tsProg.Source(), v, v)
}

// tick emits the periodic watermark and handles idleness.
func (g *wmGenerator) tick(t *task, now time.Time) {
	for !g.next.After(now) {
		g.next = g.next.Add(g.interval)
	}
	if g.sawRecord {
		g.sawRecord = false
		g.lastActive = now
	} else if g.idleTimeout > 0 && !t.outIdle && now.Sub(g.lastActive) >= g.idleTimeout {
		t.setOutIdle(true)
	}
	if t.outIdle || g.maxTs == api.NoTimestamp {
		return
	}
	wm := g.maxTs - g.ooo - 1
	if g.maxTs < math.MinInt64+g.ooo+1 {
		wm = math.MinInt64
	}
	if wm > t.lastWM {
		t.processWatermark(wm)
	}
}

// sourceOutput is the SourceOutput a source task hands to Source.Next.
type sourceOutput struct{ t *task }

// Collect implements api.Collector.
func (s *sourceOutput) Collect(r api.Record) {
	t := s.t
	if t.err != nil {
		return
	}
	t.curRecord++
	t.metrics.in++
	if g := t.wmGen; g != nil {
		if g.tsProg != nil {
			ts, err := g.timestamp(&r)
			if err != nil {
				t.recordFailed(t.srcVI, err, true)
				return
			}
			r.Timestamp = ts
		}
		if r.Timestamp != api.NoTimestamp && r.Timestamp > g.maxTs {
			g.maxTs = r.Timestamp
		}
		g.sawRecord = true
	}
	if t.outIdle {
		t.setOutIdle(false)
	}
	t.head.Collect(r)
}

// EmitWatermark implements api.SourceOutput.
func (s *sourceOutput) EmitWatermark(ts int64) {
	t := s.t
	if t.err != nil {
		return
	}
	if t.outIdle {
		t.setOutIdle(false)
	}
	if ts > t.lastWM {
		t.processWatermark(ts)
	}
}

// MarkIdle implements api.SourceOutput.
func (s *sourceOutput) MarkIdle() {
	if s.t.err == nil && !s.t.outIdle {
		s.t.setOutIdle(true)
	}
}

var _ api.SourceOutput = (*sourceOutput)(nil)
