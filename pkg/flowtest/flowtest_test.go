package flowtest_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/flowtest"
	"github.com/flowrt/flow/pkg/jobbuilder"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// The cluster's servers, JobManager and TaskManagers must all be gone
// after Stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func lines(t *testing.T, dir string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(b), "\n")
	}
	return n
}

// TestSpecAndGraph: a spec and a builder graph run to FINISHED on the same
// cluster and write every record.
func TestSpecAndGraph(t *testing.T) {
	c := flowtest.Start(t, flowtest.Options{TaskManagers: 2, Slots: 2})
	out1, out2 := t.TempDir(), t.TempDir()
	id := c.SubmitSpec(`name: from-spec
parallelism: 2
operators:
  - {id: gen, type: datagen, config: {count: 2000}}
  - {id: out, type: file, inputs: [gen], config: {path: `+out1+`}}
`, "operators.gen.config.count=1500")
	d := c.AwaitStatus(id, flowtest.Finished, time.Minute)
	if d.GetSummary().GetName() != "from-spec" {
		t.Errorf("job name %q", d.GetSummary().GetName())
	}
	if n := lines(t, out1); n != 1500 {
		t.Errorf("spec job wrote %d records, want 1500 (the --set count)", n)
	}

	j := jobbuilder.New("from-builder").Parallelism(2)
	gen := j.Source("gen", "datagen").Config(jobbuilder.Config{"count": 3000, "keys": 10})
	cnt := j.Operator("count", "count", gen).KeyBy("key")
	j.Sink("out", "file", cnt).Config(jobbuilder.Config{"path": out2})
	id = c.Submit(j.MustBuild(api.Default))
	c.AwaitStatus(id, flowtest.Finished, time.Minute)
	if n := lines(t, out2); n != 3000 {
		t.Errorf("builder job wrote %d records, want 3000", n)
	}
}

// TestMetricsAndCancel reads a running job's task metrics, then cancels it;
// a job awaited for a status it cannot reach is reported, not hung on.
func TestMetricsAndCancel(t *testing.T) {
	c := flowtest.Start(t, flowtest.Options{})
	id := c.SubmitSpec(`name: endless
operators:
  - {id: gen, type: datagen, config: {rate: 2000}}
  - {id: out, type: blackhole, inputs: [gen]}
`)
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	c.AwaitMetric("flow_task_records_in_total", 100, 30*time.Second, "flow_job", id)
	if n := c.Metric("flow_taskmanager_registered"); n != 1 {
		t.Errorf("flow_taskmanager_registered = %v, want 1", n)
	}
	if n := c.Metric("flow_jobmanager_jobs_submitted_total"); n != 1 {
		t.Errorf("flow_jobmanager_jobs_submitted_total = %v, want 1", n)
	}
	c.Cancel(id)
	c.Stop()
	c.Stop() // idempotent
}

// TestSavepointRestoreRescaled stops a keyed count with a savepoint and
// restores it with the count at another parallelism: the output of both
// runs is an uninterrupted run's (each key's counts 1..n exactly once).
func TestSavepointRestoreRescaled(t *testing.T) {
	const records, keys = 6000, 20
	c := flowtest.Start(t, flowtest.Options{TaskManagers: 2, Slots: 4})
	out := t.TempDir()
	job := func(countParallelism int) *jobbuilder.Job {
		j := jobbuilder.New("counts").Parallelism(2)
		gen := j.Source("gen", "datagen").UID("gen").Config(jobbuilder.Config{"count": records, "keys": keys, "rate": 3000})
		cnt := j.Operator("count", "count", gen).UID("count").KeyBy("key").Parallelism(countParallelism)
		j.Sink("out", "file", cnt).UID("out").Config(jobbuilder.Config{"path": out})
		return j
	}
	id := c.Submit(job(2).MustBuild(api.Default))
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for c.Metric("flow_task_records_in_total", "flow_job", id) < 1000 {
		if time.Now().After(deadline) {
			t.Fatal("the job processed no records")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	sp := c.Savepoint(id, true)
	if n := lines(t, out); n == 0 || n >= records {
		t.Fatalf("the first run wrote %d records: want part of the %d", n, records)
	}
	id = c.SubmitRequest(&clusterv1.SubmitJobRequest{Graph: job(3).MustBuild(api.Default), RestorePath: sp})
	c.AwaitStatus(id, flowtest.Finished, time.Minute)

	total := checkCounts(t, out)
	if total != records {
		t.Errorf("%d records counted over both runs, want %d", total, records)
	}
}

// checkCounts checks that the keyed count's output holds, for every key,
// the counts 1..n exactly once, and returns the number of records.
func checkCounts(t *testing.T, out string) int {
	t.Helper()
	counts := map[string][]int{}
	files, _ := filepath.Glob(filepath.Join(out, "part-*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var r struct {
				Key   string `json:"key"`
				Count int    `json:"count"`
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			counts[r.Key] = append(counts[r.Key], r.Count)
		}
	}
	total := 0
	for k, cs := range counts {
		sort.Ints(cs)
		for i, n := range cs {
			if n != i+1 {
				t.Fatalf("key %s: counts %v, want 1..%d once each", k, cs, len(cs))
			}
		}
		total += len(cs)
	}
	return total
}

// TestTaskManagerFailover stops the TaskManager running most of a keyed
// count's subtasks after a checkpoint, adds a replacement, and checks the
// job restarted and still counts exactly once.
func TestTaskManagerFailover(t *testing.T) {
	const records = 8000
	c := flowtest.Start(t, flowtest.Options{TaskManagers: 2, Slots: 2, HeartbeatTimeout: 2 * time.Second})
	out := t.TempDir()
	id := c.SubmitSpec(`name: failover
parallelism: 2
operators:
  - {id: gen, type: datagen, config: {count: 8000, keys: 20, rate: 3000}}
  - {id: count, type: count, inputs: [gen], keyBy: key}
  - {id: out, type: file, inputs: [count], config: {path: ` + out + `}}
checkpoints: {interval: 200ms}
restart: {strategy: fixed_delay, attempts: 10, delay: 100ms}
`)
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for c.Metric("flow_task_records_in_total", "flow_job", id) < 2000 {
		if time.Now().After(deadline) {
			t.Fatal("the job processed too few records")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	hosts := map[string]int{}
	for _, tv := range c.Job(id).GetTasks() {
		for _, st := range tv.GetSubtasks() {
			hosts[st.GetTaskManagerId()]++
		}
	}
	victim := "tm-0"
	if hosts["tm-1"] > hosts["tm-0"] {
		victim = "tm-1"
	}
	c.StopTaskManager(int(victim[3] - '0'))
	c.AddTaskManager()
	d := c.AwaitStatus(id, flowtest.Finished, time.Minute)
	if a := d.GetSummary().GetAttempt(); a < 2 {
		t.Fatalf("the job finished in attempt %d: stopping %s did not hit it", a, victim)
	}
	if n := checkCounts(t, out); n != records {
		t.Errorf("%d records counted, want %d", n, records)
	}
}
