package flowtest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/flowtest"
	"github.com/flowrt/flow/pkg/jobbuilder"
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
	deadline := time.Now().Add(30 * time.Second)
	for c.Metric("flow_task_records_in_total", "job", id) < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("records_in stayed at %v", c.Metric("flow_task_records_in_total", "job", id))
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
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
