package jobspec_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowrt/flow/internal/minicluster"
	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/connectors/file"
	"github.com/flowrt/flow/pkg/connectors/print"
	"github.com/flowrt/flow/pkg/jobspec"
	"github.com/flowrt/flow/pkg/operators/lookup"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// kafkaEnv names the environment variable holding the address of the
// in-process Kafka broker (kfake) the good specs' kafka operators use:
// "$FLOW_TESTDATA_KAFKA" in a spec's "# set:" lines stands for it, and the
// golden files show it so.
const kafkaEnv = "FLOW_TESTDATA_KAFKA"

func TestMain(m *testing.M) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "flow-testdata-in", "flow-testdata-out"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "start kfake:", err)
		os.Exit(1)
	}
	os.Setenv(kafkaEnv, c.ListenAddrs()[0])
	code := m.Run()
	c.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// TestGoodSpecsDeploy holds the spec format to its promise that a spec that
// validates runs: every spec in testdata/good is submitted to an in-process
// mini cluster and must get every task running without a failure. Bounded
// specs (every source ends) must finish; unbounded ones must complete a
// savepoint (every subtask built its chain, opened its operators and
// acknowledged a barrier) and are then canceled. The spec files stay as they
// are: file paths and checkpoint storage are pointed into t.TempDir() with
// --set overrides.
func TestGoodSpecsDeploy(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/good/*.yaml")
	}
	print.Stdout = io.Discard // the print sink of defaults.yaml

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 2, Slots: 4, DataDir: t.TempDir(), Registry: api.Default})
	if err != nil {
		t.Fatalf("start mini cluster: %v", err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("close mini cluster: %v", err)
		}
	}()
	conn, err := grpc.NewClient(c.JobManagerAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jm := clusterv1.NewJobManagerServiceClient(conn)

	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			g, bounded := parseForDeploy(t, f)
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			resp, err := jm.SubmitJob(ctx, &clusterv1.SubmitJobRequest{Graph: g})
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			id := resp.GetJobId()
			if bounded {
				awaitJob(ctx, t, jm, id, "FINISHED", func(d *clusterv1.JobDetails) bool {
					return d.GetSummary().GetStatus() == clusterv1.JobStatus_JOB_STATUS_FINISHED
				})
				return
			}
			awaitJob(ctx, t, jm, id, "every subtask RUNNING", allRunning)
			savepoint(ctx, t, jm, id, "file://"+filepath.ToSlash(t.TempDir()))
			if _, err := jm.CancelJob(ctx, &clusterv1.CancelJobRequest{JobId: id}); err != nil {
				t.Fatalf("cancel: %v", err)
			}
			awaitJob(ctx, t, jm, id, "CANCELED", func(d *clusterv1.JobDetails) bool {
				return d.GetSummary().GetStatus() == clusterv1.JobStatus_JOB_STATUS_CANCELED
			})
		})
	}
}

// oneOfRequired are fields of which a type needs one of several (the
// kafka source reads topics or a topicPattern): none is Required, but a
// spec giving one of them uses the type with its required config.
var oneOfRequired = map[string]bool{
	"kafka/source/topics":        true,
	"distinct/operator/distinct": true, // distinct needs a distinct or a count output
	"distinct/operator/count":    true,
}

// TestGoodSpecsCoverEveryBuiltinType: for every built-in operator type some
// good spec uses it with only its required config fields, so every optional
// field's default is deployed by TestGoodSpecsDeploy.
func TestGoodSpecsCoverEveryBuiltinType(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	covered := map[string]bool{} // type/kind
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		g, err := jobspec.Parse(data, filepath.Base(f), api.Default, headerSets(data))
		if err != nil {
			t.Fatal(err)
		}
		var spec struct {
			Operators []struct {
				ID     string         `yaml:"id"`
				Config map[string]any `yaml:"config"`
			} `yaml:"operators"`
		}
		if err := yaml.Unmarshal(data, &spec); err != nil {
			t.Fatal(err)
		}
		for _, op := range spec.Operators {
			for _, v := range g.GetVertices() {
				if v.GetId() != op.ID {
					continue
				}
				typ, err := api.Default.LookupKind(v.GetType(), kindOf(v))
				if err != nil {
					t.Fatal(err)
				}
				onlyRequired := true
				for k := range op.Config {
					if f, ok := typ.Field(k); !ok || (!f.Required && !oneOfRequired[typ.Name+"/"+typ.Kind.String()+"/"+k]) {
						onlyRequired = false
					}
				}
				if onlyRequired {
					covered[typ.Name+"/"+typ.Kind.String()] = true
				}
			}
		}
	}
	for _, typ := range api.Default.Types() {
		if !covered[typ.Name+"/"+typ.Kind.String()] {
			t.Errorf("no good spec uses %s %q with only its required config fields: add it to testdata/good/defaults.yaml", typ.Kind, typ.Name)
		}
	}
}

func kindOf(v *jobgraphv1.Vertex) api.Kind {
	switch v.GetKind() {
	case jobgraphv1.VertexKind_VERTEX_KIND_SOURCE:
		return api.KindSource
	case jobgraphv1.VertexKind_VERTEX_KIND_SINK:
		return api.KindSink
	}
	return api.KindOperator
}

// parseForDeploy parses a good spec with its "# set:" header and with
// overrides that point file sinks, file sources and checkpoint storage into
// temporary directories. bounded is true when every source ends.
func parseForDeploy(t *testing.T, path string) (_ *jobgraphv1.JobGraph, bounded bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sets := headerSets(data)
	name := filepath.Base(path)
	g, err := jobspec.Parse(data, name, api.Default, sets)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	dir := t.TempDir()
	bounded = true
	for _, v := range g.GetVertices() {
		switch {
		case v.GetType() == file.SinkName && v.GetKind() == jobgraphv1.VertexKind_VERTEX_KIND_SINK:
			sets = append(sets, fmt.Sprintf("operators.%s.config.path=%s", v.GetId(), filepath.Join(dir, v.GetId())))
		case v.GetType() == file.SourceName && v.GetKind() == jobgraphv1.VertexKind_VERTEX_KIND_SOURCE:
			in := filepath.Join(dir, v.GetId()+".jsonl")
			var lines strings.Builder
			for i := range 50 {
				fmt.Fprintf(&lines, "{\"key\":\"k%d\",\"seq\":%d,\"value\":%d}\n", i%7, i, i*13%1000)
			}
			if err := os.WriteFile(in, []byte(lines.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			sets = append(sets, fmt.Sprintf("operators.%s.config.path=%s", v.GetId(), in))
		case v.GetType() == datagen.Name && v.GetKind() == jobgraphv1.VertexKind_VERTEX_KIND_SOURCE:
			typ, err := api.Default.LookupKind(v.GetType(), api.KindSource)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := typ.DecodeConfigJSON(v.GetConfig())
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Int("count") == 0 {
				bounded = false
				if cfg.Int("rate") == 0 {
					// Unthrottled and unbounded, it fills every buffer and
					// the savepoint's barriers queue behind them for seconds.
					sets = append(sets, fmt.Sprintf("operators.%s.config.rate=2000", v.GetId()))
				}
			}
		case v.GetType() == lookup.Name:
			// The side table is read when the operator opens: give it one.
			table := filepath.Join(dir, v.GetId()+"-table.jsonl")
			var rows strings.Builder
			for i := range 7 {
				fmt.Fprintf(&rows, "{\"key\":\"k%d\",\"name\":\"row %d\"}\n", i, i)
			}
			if err := os.WriteFile(table, []byte(rows.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			sets = append(sets, fmt.Sprintf("operators.%s.config.path=%s", v.GetId(), table))
		case v.GetKind() == jobgraphv1.VertexKind_VERTEX_KIND_SOURCE:
			bounded = false // unknown source: treat as unbounded
		}
	}
	if ck, err := jobspec.CheckpointsOf(g); err != nil {
		t.Fatal(err)
	} else if ck.Storage != "" {
		sets = append(sets, "checkpoints.storage=file://"+filepath.ToSlash(filepath.Join(dir, "checkpoints")))
	}
	g, err = jobspec.Parse(data, name, api.Default, sets)
	if err != nil {
		t.Fatalf("parse with overrides %q: %v", sets, err)
	}
	return g, bounded
}

// headerSets reads the "# set: path=value" comments at the top of a spec.
func headerSets(data []byte) (sets []string) {
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "#") {
			break
		}
		if s, ok := strings.CutPrefix(line, "# set: "); ok {
			sets = append(sets, strings.ReplaceAll(s, "$"+kafkaEnv, os.Getenv(kafkaEnv)))
		}
	}
	return sets
}

func allRunning(d *clusterv1.JobDetails) bool {
	if d.GetSummary().GetStatus() != clusterv1.JobStatus_JOB_STATUS_RUNNING {
		return false
	}
	for _, task := range d.GetTasks() {
		for _, s := range task.GetSubtasks() {
			if s.GetState() != clusterv1.TaskState_TASK_STATE_RUNNING {
				return false
			}
		}
	}
	return true
}

// awaitJob polls the job until done(details) holds. Any failure (a failed
// subtask, a FAILING, RESTARTING or FAILED status, now or in the history)
// fails the test with its message.
func awaitJob(ctx context.Context, t *testing.T, jm clusterv1.JobManagerServiceClient, id, what string, done func(*clusterv1.JobDetails) bool) {
	t.Helper()
	for {
		resp, err := jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: id})
		if err != nil {
			t.Fatalf("get job: %v", err)
		}
		d := resp.GetJob()
		if msg := failure(d); msg != "" {
			t.Fatalf("job failed: %s", msg)
		}
		if done(d) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job is %v, not %s: %v", d.GetSummary().GetStatus(), what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func failure(d *clusterv1.JobDetails) string {
	for _, task := range d.GetTasks() {
		for _, s := range task.GetSubtasks() {
			if s.GetState() == clusterv1.TaskState_TASK_STATE_FAILED || s.GetFailure() != "" {
				return fmt.Sprintf("task %s subtask %d: %s", task.GetId(), s.GetIndex(), s.GetFailure())
			}
		}
	}
	for _, h := range d.GetHistory() {
		switch h.GetStatus() {
		case clusterv1.JobStatus_JOB_STATUS_FAILING, clusterv1.JobStatus_JOB_STATUS_RESTARTING, clusterv1.JobStatus_JOB_STATUS_FAILED:
			return fmt.Sprintf("%v: %s", h.GetStatus(), h.GetMessage())
		}
	}
	return ""
}

// savepoint takes a savepoint of the running job and waits for it.
func savepoint(ctx context.Context, t *testing.T, jm clusterv1.JobManagerServiceClient, id, dir string) {
	t.Helper()
	stream, err := jm.TriggerSavepoint(ctx, &clusterv1.TriggerSavepointRequest{JobId: id, TargetDir: dir})
	if err != nil {
		t.Fatalf("trigger savepoint: %v", err)
	}
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			t.Fatal("savepoint stream ended before the savepoint completed")
		}
		if err != nil {
			t.Fatalf("savepoint: %v", err)
		}
		if p.GetDone() {
			return
		}
	}
}
