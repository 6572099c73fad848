package flowtest_test

import (
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/flowtest"
	"github.com/flowrt/flow/pkg/jobbuilder"
)

// checkMyJob is what a test of yours does: start a cluster with your
// registry, submit a job (a spec, or a graph from pkg/jobbuilder), await
// its status and read a metric. t.Cleanup stops the cluster.
//
//	func TestMyJob(t *testing.T) { checkMyJob(t) }
func checkMyJob(t *testing.T) {
	c := flowtest.Start(t, flowtest.Options{Registry: api.Default, TaskManagers: 2})

	id := c.SubmitSpec(`name: from-yaml
operators:
  - {id: gen, type: datagen, config: {count: 1000}}
  - {id: out, type: blackhole, inputs: [gen]}
`)
	c.AwaitStatus(id, flowtest.Finished, time.Minute)

	j := jobbuilder.New("from-go")
	gen := j.Source("gen", "datagen").Config(jobbuilder.Config{"rate": 1000})
	j.Sink("out", "blackhole", gen)
	id = c.Submit(j.MustBuild(api.Default))
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	if n := c.Metric("flow_taskmanager_tasks_deployed_total"); n == 0 {
		t.Errorf("no tasks deployed")
	}
	c.Cancel(id)
}

func Example() {
	// See checkMyJob above: call it from a test function.
	_ = checkMyJob
}
