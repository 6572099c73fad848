package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/pkg/jobspec"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// dial connects to a JobManager.
func dial(b testing.TB, addr string) clusterv1.JobManagerServiceClient {
	b.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return clusterv1.NewJobManagerServiceClient(conn)
}

// submit parses a job spec with the package registry and submits it.
func submit(b testing.TB, c clusterv1.JobManagerServiceClient, spec string) string {
	b.Helper()
	g, err := jobspec.Parse([]byte(spec), "bench.yaml", registry, nil)
	if err != nil {
		b.Fatalf("job spec: %v\n%s", err, spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.SubmitJob(ctx, &clusterv1.SubmitJobRequest{Graph: g})
	if err != nil {
		b.Fatalf("submit: %v", err)
	}
	return resp.GetJobId()
}

func getJob(c clusterv1.JobManagerServiceClient, id string) *clusterv1.JobDetails {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
	if err != nil {
		return nil
	}
	return resp.GetJob()
}

func listCheckpoints(c clusterv1.JobManagerServiceClient, id string) *clusterv1.ListCheckpointsResponse {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.ListCheckpoints(ctx, &clusterv1.ListCheckpointsRequest{JobId: id})
	if err != nil {
		return &clusterv1.ListCheckpointsResponse{}
	}
	return resp
}

// completed returns the completed checkpoints (COMPLETED or DISCARDED out
// of retention), oldest first.
func completed(r *clusterv1.ListCheckpointsResponse) []*clusterv1.CheckpointInfo {
	var out []*clusterv1.CheckpointInfo
	for _, cp := range r.GetCheckpoints() {
		switch cp.GetStatus() {
		case clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, clusterv1.CheckpointStatus_CHECKPOINT_STATUS_DISCARDED:
			if !cp.GetSavepoint() {
				out = append(out, cp)
			}
		}
	}
	slices.SortFunc(out, func(a, b *clusterv1.CheckpointInfo) int { return int(a.GetId() - b.GetId()) })
	return out
}

func failedCheckpoints(r *clusterv1.ListCheckpointsResponse) []string {
	var out []string
	for _, cp := range r.GetCheckpoints() {
		if cp.GetStatus() == clusterv1.CheckpointStatus_CHECKPOINT_STATUS_FAILED {
			out = append(out, fmt.Sprintf("%d: %s", cp.GetId(), cp.GetFailure()))
		}
	}
	return out
}

func cancelJob(c clusterv1.JobManagerServiceClient, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = c.CancelJob(ctx, &clusterv1.CancelJobRequest{JobId: id})
}

func isEnded(j *clusterv1.JobDetails) bool {
	switch j.GetSummary().GetStatus() {
	case clusterv1.JobStatus_JOB_STATUS_FINISHED, clusterv1.JobStatus_JOB_STATUS_FAILED, clusterv1.JobStatus_JOB_STATUS_CANCELED:
		return true
	}
	return false
}

// allRunning says whether the job is RUNNING with every subtask RUNNING.
func allRunning(j *clusterv1.JobDetails) bool {
	if j.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RUNNING {
		return false
	}
	for _, tv := range j.GetTasks() {
		for _, s := range tv.GetSubtasks() {
			if s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING {
				return false
			}
		}
	}
	return true
}

// waitFor polls cond every poll until it holds or timeout passes.
func waitFor(b testing.TB, timeout, poll time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(poll)
	}
}

// historyTime returns the time of the n-th (0-based) change to status st
// in the job's history, or the zero time.
func historyTime(j *clusterv1.JobDetails, st clusterv1.JobStatus, n int) time.Time {
	for _, h := range j.GetHistory() {
		if h.GetStatus() == st {
			if n == 0 {
				return time.UnixMilli(h.GetTimeMs())
			}
			n--
		}
	}
	return time.Time{}
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// geomean is the geometric mean of xs (positive).
func geomean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, x := range xs {
		sum += math.Log(x)
	}
	return math.Exp(sum / float64(len(xs)))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// envInt reads a positive integer from the environment, or def.
func envInt(b testing.TB, name string, def int64) int64 {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(v, "_", ""), 10, 64)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// loadAvg is the 1-minute load average (for the report).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func mb(n int64) float64 { return float64(n) / mib }
