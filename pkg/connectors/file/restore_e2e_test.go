package file_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
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

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestFailedRestoreKeepsLaterRunsOutput is the fault as it was reported, on
// an in-process cluster: job A (datagen -> file sink at another
// parallelism, so the sink is a task of its own) writes with checkpoints
// and is canceled; job C, started later, writes into the same directory
// and finishes; then job B restores A's checkpoint, whose source state is
// corrupt. B fails, and the directory, C's committed files included, is as
// it was.
func TestFailedRestoreKeepsLaterRunsOutput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 1, Slots: 4, DataDir: t.TempDir(), Registry: api.Default})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	conn, err := grpc.NewClient(cl.JobManagerAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jm := clusterv1.NewJobManagerServiceClient(conn)

	out, storage := filepath.Join(t.TempDir(), "out"), "file://"+filepath.ToSlash(t.TempDir())
	spec := func(name, gen, checkpoints string) string {
		return fmt.Sprintf(`name: %s
parallelism: 2
operators:
  - {id: src, type: datagen, uid: src-v1, config: %s}
  - {id: sink, type: file, uid: sink-v1, parallelism: 1, inputs: [src], config: {path: %q}}
restart: {strategy: none}
%s
`, name, gen, out, checkpoints)
	}
	submit := func(yaml, restore string) string {
		t.Helper()
		g, err := jobspec.Parse([]byte(yaml), "job.yaml", api.Default, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := jm.SubmitJob(ctx, &clusterv1.SubmitJobRequest{Graph: g, RestorePath: restore})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetJobId()
	}
	status := func(id string) clusterv1.JobStatus {
		resp, err := jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetJob().GetSummary().GetStatus()
	}
	await := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	committedFiles := func() map[string]string {
		files := map[string]string{}
		ents, _ := os.ReadDir(out)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(out, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = string(b)
		}
		return files
	}

	a := submit(spec("a", "{count: 1000000, rate: 4000}", fmt.Sprintf("checkpoints: {interval: 100ms, storage: %q, retainOnCancel: true}", storage)), "")
	var ckPath string
	await("a completed checkpoint of job A with committed output", func() bool {
		resp, err := jm.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: a})
		if err != nil {
			return false
		}
		ckPath = resp.GetLatestCompletedPath()
		for n := range committedFiles() {
			if !strings.HasPrefix(n, ".") && ckPath != "" {
				return true
			}
		}
		return false
	})
	if _, err := jm.CancelJob(ctx, &clusterv1.CancelJobRequest{JobId: a}); err != nil {
		t.Fatal(err)
	}
	await("job A canceled", func() bool { return status(a) == clusterv1.JobStatus_JOB_STATUS_CANCELED })

	ofA := committedFiles()
	c := submit(spec("c", "{count: 3000, seed: 7}", ""), "")
	await("job C finished", func() bool { return status(c) == clusterv1.JobStatus_JOB_STATUS_FINISHED })
	before := committedFiles()
	var ofC []string
	for n := range before {
		if _, ok := ofA[n]; !ok {
			ofC = append(ofC, n)
		}
	}
	if len(ofC) == 0 {
		t.Fatal("job C committed nothing")
	}

	// Corrupt the source's state in A's checkpoint.
	u, err := url.Parse(ckPath)
	if err != nil {
		t.Fatal(err)
	}
	corrupted := 0
	ents, err := os.ReadDir(u.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "src-v1") {
			if err := os.WriteFile(filepath.Join(u.Path, e.Name()), []byte("not a state file"), 0o644); err != nil {
				t.Fatal(err)
			}
			corrupted++
		}
	}
	if corrupted == 0 {
		t.Fatalf("no state file of src-v1 in %s", u.Path)
	}

	b := submit(spec("b", "{count: 1000000, rate: 4000}", fmt.Sprintf("checkpoints: {interval: 100ms, storage: %q}", storage)), ckPath)
	await("job B failed", func() bool { return status(b) == clusterv1.JobStatus_JOB_STATUS_FAILED })
	if resp, err := jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: b}); err == nil {
		t.Logf("job B: %s", resp.GetJob().GetSummary().GetFailure())
	}
	after := committedFiles()
	for n, content := range before {
		if got, ok := after[n]; !ok {
			t.Errorf("%s was removed by a restore that failed", n)
		} else if got != content {
			t.Errorf("%s was changed by a restore that failed", n)
		}
	}
	for n := range after {
		if _, ok := before[n]; !ok {
			t.Errorf("%s appeared during a restore that failed", n)
		}
	}
}
