package jobmanager

import (
	"github.com/prometheus/client_golang/prometheus"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

var (
	descJobs = prometheus.NewDesc("flow_jobmanager_jobs",
		"Jobs known to the JobManager, by status.", []string{"status"}, nil)
	descTaskManagers = prometheus.NewDesc("flow_jobmanager_taskmanagers",
		"TaskManagers known to the JobManager, by state.", []string{"state"}, nil)
	descSlots = prometheus.NewDesc("flow_jobmanager_slots",
		"Task slots of active TaskManagers, by use (free or used).", []string{"use"}, nil)
)

// stateCollector reports gauges computed from the JobManager's state at
// scrape time, so they can never drift from it.
type stateCollector struct{ jm *JobManager }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descJobs
	ch <- descTaskManagers
	ch <- descSlots
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	jm := c.jm
	jobs := map[string]float64{}
	for name, v := range clusterv1.JobStatus_value {
		if v != 0 {
			jobs[name] = 0
		}
	}
	for _, m := range jm.masters() {
		jobs[m.View().Status().String()]++
	}
	tms := map[string]float64{}
	for name, v := range clusterv1.TaskManagerState_value {
		if v != 0 {
			tms[name] = 0
		}
	}
	byState, free, used := jm.reg.Stats()
	for name, n := range byState {
		tms[name] += n
	}
	for name, n := range jobs {
		ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, n, trimPrefix(name, "JOB_STATUS_"))
	}
	for name, n := range tms {
		ch <- prometheus.MustNewConstMetric(descTaskManagers, prometheus.GaugeValue, n, trimPrefix(name, "TASK_MANAGER_STATE_"))
	}
	ch <- prometheus.MustNewConstMetric(descSlots, prometheus.GaugeValue, free, "free")
	ch <- prometheus.MustNewConstMetric(descSlots, prometheus.GaugeValue, used, "used")
}

func trimPrefix(s, p string) string {
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
