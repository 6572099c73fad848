package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Live progress of an attached run or local: while the job runs, one line
// with the records/s its sources emit and its sinks write, the completed
// checkpoints with the last one's duration, and the highest backpressure
// level of its vertices (from the JobManager's heartbeat samples,
// GetVertexStats). On a terminal the line is redrawn in place every
// second; otherwise a plain line is printed every 5 s (Env.ProgressInterval).

const (
	ttyProgressInterval   = time.Second
	plainProgressInterval = 5 * time.Second
)

// isTTY reports whether w is a character device (a terminal).
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// printer serializes status lines and the progress line on one writer.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	shown bool // a progress line is on the terminal, without its newline
}

// line prints a status line (over the progress line on a terminal).
func (p *printer) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	fmt.Fprintln(p.w, s)
}

func (p *printer) progress(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K"+s)
		p.shown = true
		return
	}
	fmt.Fprintln(p.w, s)
}

// clear removes the progress line from the terminal.
func (p *printer) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
}

func (p *printer) clearLocked() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

// followProgress prints progress lines for job id until ctx ends.
func (c *client) followProgress(ctx context.Context, id string, p *printer) {
	interval := c.g.env.ProgressInterval
	if interval <= 0 {
		interval = plainProgressInterval
		if p.tty {
			interval = ttyProgressInterval
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s, ok := c.progressLine(ctx, id); ok && ctx.Err() == nil {
			p.progress(s)
		}
	}
}

// progressLine is the job's progress now; false when it is not running or
// the JobManager did not answer (the next tick tries again).
func (c *client) progressLine(ctx context.Context, id string) (string, bool) {
	var job *clusterv1.GetJobResponse
	var stats *clusterv1.GetVertexStatsResponse
	var cks *clusterv1.ListCheckpointsResponse
	err := c.call(ctx, func(ctx context.Context) (err error) {
		if job, err = c.jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id}); err != nil {
			return err
		}
		if stats, err = c.jm.GetVertexStats(ctx, &clusterv1.GetVertexStatsRequest{JobId: id}); err != nil {
			return err
		}
		cks, err = c.jm.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: id})
		return err
	})
	if err != nil || job.GetJob().GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RUNNING {
		return "", false
	}
	return c.g.env.Now().Format("15:04:05.000") + "  " + formatProgress(job.GetJob(), stats, cks), true
}

// formatProgress renders the progress line: records/s the source vertices
// emit (in) and the sink vertices write (out), checkpoints completed and
// the newest one's duration, the highest backpressure level.
func formatProgress(job *clusterv1.JobDetails, stats *clusterv1.GetVertexStatsResponse, cks *clusterv1.ListCheckpointsResponse) string {
	kinds := map[string]jobgraphv1.VertexKind{}
	for _, v := range job.GetGraph().GetVertices() {
		kinds[v.GetId()] = v.GetKind()
	}
	var in, out float64
	sampled := false
	for _, v := range stats.GetVertices() {
		ops := v.GetOperators()
		if len(ops) == 0 || v.GetSampledSubtasks() == 0 {
			continue
		}
		sampled = true
		if kinds[ops[0]] == jobgraphv1.VertexKind_VERTEX_KIND_SOURCE {
			in += v.GetRecordsOutPerSecond()
		}
		if kinds[ops[len(ops)-1]] == jobgraphv1.VertexKind_VERTEX_KIND_SINK {
			out += v.GetRecordsOutPerSecond()
		}
	}
	rates := "in —  out —"
	if sampled {
		rates = fmt.Sprintf("in %s  out %s", perSecond(in), perSecond(out))
	}
	completed, last := 0, ""
	for _, k := range cks.GetCheckpoints() { // newest first
		if k.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED || k.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED {
			if completed == 0 {
				last = fmt.Sprintf(" (last %s)", (time.Duration(k.GetDurationMs()) * time.Millisecond).String())
			}
			completed++
		}
	}
	level := strings.TrimPrefix(stats.GetMaxLevel().String(), "BACKPRESSURE_LEVEL_")
	if stats.GetMaxLevel() == clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_UNSPECIFIED {
		level = "—"
	}
	n := fmt.Sprint(completed)
	if len(cks.GetCheckpoints()) >= 100 {
		n += "+" // the history keeps the last 100
	}
	return fmt.Sprintf("records/s %s  checkpoints %s%s  backpressure %s", rates, n, last, level)
}

// perSecond renders a rate: 950/s, 12.3k/s, 4.56M/s.
func perSecond(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM/s", r/1e6)
	case r >= 1e4:
		return fmt.Sprintf("%.1fk/s", r/1e3)
	}
	return fmt.Sprintf("%.0f/s", r)
}
