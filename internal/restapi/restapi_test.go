package restapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/minicluster"
	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/jobspec"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A savepoint triggered through the REST API is followed by a goroutine
// of the API until it completes; its progress is read back by trigger id,
// and Close leaves no goroutine behind (goleak), also with a savepoint
// still in progress at Close. Over a real mini cluster.
func TestSavepointTriggerAndClose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mc, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 1, Slots: 2, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	conn, err := grpc.NewClient(mc.JobManagerAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jm := clusterv1.NewJobManagerServiceClient(conn)
	g, err := jobspec.Parse([]byte(`name: rest
operators:
  - {id: gen, type: datagen, config: {rate: 1000}}
  - {id: out, type: blackhole, inputs: [gen]}
checkpoints: {interval: 100ms}
`), "rest.yaml", api.Default, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := jm.SubmitJob(ctx, &clusterv1.SubmitJobRequest{Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	id := sub.GetJobId()
	for {
		j, err := jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
		if err == nil && j.GetJob().GetSummary().GetStatus() == clusterv1.JobStatus_JOB_STATUS_RUNNING {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the job did not run")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}

	a := New(jm)
	srv := httptest.NewServer(a)
	trigger := func() string {
		resp, err := http.Post(srv.URL+"/api/v1/jobs/"+id+"/savepoints", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			TriggerID string `json:"trigger_id"`
		}
		if resp.StatusCode != http.StatusAccepted || json.NewDecoder(resp.Body).Decode(&out) != nil || out.TriggerID == "" {
			t.Fatalf("trigger: %s", resp.Status)
		}
		return out.TriggerID
	}
	tid := trigger()
	var status string
	for status != "COMPLETED" {
		resp, err := http.Get(srv.URL + "/api/v1/jobs/" + id + "/savepoints/" + tid)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Status  string `json:"status"`
			Failure string `json:"failure"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || out.Status == "FAILED" {
			t.Fatalf("savepoint status: %v %+v", err, out)
		}
		status = out.Status
		if ctx.Err() != nil {
			t.Fatalf("the savepoint did not complete: %s", status)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	trigger() // one more, possibly still running when the API closes
	srv.Close()
	a.Close()
	if _, err := jm.CancelJob(ctx, &clusterv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
}
