package jobmanager

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/internal/apijson"
	"github.com/flowrt/flow/internal/jobmanager/jobmaster"
	"github.com/flowrt/flow/internal/jobmanager/lifecycle"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// Per-job metrics, read from each job master's published view at scrape
// time (no job master is asked anything). Jobs that ended are not reported:
// their series go away, as a finished Flink job's do.
var (
	jobLabels = []string{"flow_job", "flow_job_name"}

	descCheckpoints = prometheus.NewDesc("flow_checkpoints_total",
		"Checkpoints (and savepoints) that ended, by result: completed, failed (declined, expired or not finalized), aborted (subsumed, a task not ready, input finished).",
		append(jobLabels, "result"), nil)
	descInProgress = prometheus.NewDesc("flow_checkpoints_in_progress",
		"Checkpoints pending now.", jobLabels, nil)
	descDuration = prometheus.NewDesc("flow_checkpoint_duration_seconds",
		"Time from trigger to completion of completed checkpoints.", jobLabels, nil)
	descLastSize = prometheus.NewDesc("flow_checkpoint_last_size_bytes",
		"Bytes the last completed checkpoint uploaded (an incremental one: its new files).", jobLabels, nil)
	descLastFullSize = prometheus.NewDesc("flow_checkpoint_last_full_size_bytes",
		"Full state size of the last completed checkpoint.", jobLabels, nil)
	descLastCompleted = prometheus.NewDesc("flow_checkpoint_last_completed_timestamp_seconds",
		"When the last checkpoint completed, seconds since the epoch (0: none yet).", jobLabels, nil)
	descRestored = prometheus.NewDesc("flow_checkpoint_restored_timestamp_seconds",
		"When the current attempt was deployed from a checkpoint or savepoint, seconds since the epoch (0: it started empty).", jobLabels, nil)
	descRestarts = prometheus.NewDesc("flow_job_restarts_total",
		"Restarts of the job (its attempt number minus one).", jobLabels, nil)
	descUptime = prometheus.NewDesc("flow_job_uptime_seconds",
		"Time since the job last became RUNNING (0 when it is not running).", jobLabels, nil)
	descJobStatus = prometheus.NewDesc("flow_job_status",
		"1 for the job's current status, 0 for every other status.", append(jobLabels, "status"), nil)
)

// jobCollector reports the per-job checkpoint and lifecycle metrics.
type jobCollector struct{ jm *JobManager }

func (c *jobCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCheckpoints, descInProgress, descDuration, descLastSize, descLastFullSize,
		descLastCompleted, descRestored, descRestarts, descUptime, descJobStatus} {
		ch <- d
	}
}

func (c *jobCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	statusPrefix := apijson.EnumPrefix(clusterv1.JobStatus(0).Descriptor())
	for _, m := range c.jm.masters() {
		v := m.View()
		sum := v.Details.GetSummary()
		if lifecycle.IsTerminal(sum.GetStatus()) {
			continue
		}
		l := []string{sum.GetJobId(), sum.GetName()}
		gauge := func(d *prometheus.Desc, x float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, x, append(l, extra...)...)
		}
		counter := func(d *prometheus.Desc, x float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, x, append(l, extra...)...)
		}
		s := v.Stats
		counter(descCheckpoints, float64(s.Completed), "completed")
		counter(descCheckpoints, float64(s.Failed), "failed")
		counter(descCheckpoints, float64(s.Aborted), "aborted")
		gauge(descInProgress, float64(s.InProgress))
		buckets := map[float64]uint64{}
		var cum uint64
		for i, bound := range jobmaster.DurationBuckets {
			cum += s.Durations[i]
			buckets[bound] = cum
		}
		cum += s.Durations[len(jobmaster.DurationBuckets)]
		ch <- prometheus.MustNewConstHistogram(descDuration, cum, s.DurationSum, buckets, l...)
		gauge(descLastSize, float64(s.LastSize))
		gauge(descLastFullSize, float64(s.LastFullSize))
		gauge(descLastCompleted, unixSeconds(s.LastCompleted))
		gauge(descRestored, unixSeconds(s.Restored))
		counter(descRestarts, float64(v.Job.Restarts))
		up := 0.0
		if !v.Job.RunningSince.IsZero() {
			up = now.Sub(v.Job.RunningSince).Seconds()
		}
		gauge(descUptime, up)
		for name, n := range clusterv1.JobStatus_value {
			if n == 0 {
				continue
			}
			x := 0.0
			if clusterv1.JobStatus(n) == sum.GetStatus() {
				x = 1
			}
			gauge(descJobStatus, x, trimPrefix(name, statusPrefix))
		}
	}
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMilli()) / 1000
}
