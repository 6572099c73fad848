package cli

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

var progressLine = regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3}  records/s in (—|\S+/s)  out (—|\S+/s)  checkpoints \d+\+?( \(last \S+\))?  backpressure (—|OK|LOW|HIGH)$`)

// flowctl local with stdout not a terminal prints plain progress lines
// (no carriage returns or escapes) between its status lines, from the
// cluster's heartbeat samples and checkpoint history.
func TestLocalProgressPlain(t *testing.T) {
	spec := writeSpec(t, fmt.Sprintf(`name: progress
parallelism: 1
operators:
  - {id: gen, type: datagen, config: {count: 9000, rate: 1500, keys: 10}}
  - {id: count, type: count, inputs: [gen], keyBy: key}
  - {id: sink, type: blackhole, inputs: [count]}
checkpoints: {interval: 200ms, storage: %q}
`, "file://"+filepath.Join(t.TempDir(), "ck")))
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"local", spec, "--task-managers", "1", "--slots", "2"}, Env{
		Registry: api.Default, Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" },
		ProgressInterval: 250 * time.Millisecond,
	})
	if code != 0 {
		t.Fatalf("local: exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	if strings.ContainsAny(out.String(), "\r\033") {
		t.Errorf("terminal control characters in plain output:\n%q", out.String())
	}
	var progress, sampled, checkpointed int
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !strings.Contains(l, "records/s") {
			continue
		}
		progress++
		m := progressLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("progress line %q does not match %s", l, progressLine)
			continue
		}
		if m[1] != "—" && m[1] != "0/s" {
			sampled++
		}
		if m[3] != "" {
			checkpointed++
		}
	}
	t.Logf("stdout:\n%s", out.String())
	if progress < 3 || sampled == 0 || checkpointed == 0 {
		t.Errorf("%d progress lines, %d with a source rate, %d with a checkpoint; want several, some with both:\n%s", progress, sampled, checkpointed, out.String())
	}
	if !regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3}  FINISHED`).MatchString(out.String()) {
		t.Errorf("no FINISHED line:\n%s", out.String())
	}
}

func TestFormatProgress(t *testing.T) {
	job := &clusterv1.JobDetails{Graph: &jobgraphv1.JobGraph{Vertices: []*jobgraphv1.Vertex{
		{Id: "gen", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SOURCE},
		{Id: "count", Kind: jobgraphv1.VertexKind_VERTEX_KIND_OPERATOR},
		{Id: "sink", Kind: jobgraphv1.VertexKind_VERTEX_KIND_SINK}}}}
	stats := &clusterv1.GetVertexStatsResponse{MaxLevel: clusterv1.BackpressureLevel_BACKPRESSURE_LEVEL_HIGH, Vertices: []*clusterv1.VertexStats{
		{Id: "gen", Operators: []string{"gen"}, SampledSubtasks: 2, RecordsOutPerSecond: 25000},
		{Id: "count", Operators: []string{"count", "sink"}, SampledSubtasks: 1, RecordsInPerSecond: 25000, RecordsOutPerSecond: 900}}}
	cks := &clusterv1.ListCheckpointsResponse{Checkpoints: []*clusterv1.CheckpointInfo{
		{Id: 3, Status: clusterv1.CheckpointStatus_CHECKPOINT_STATUS_IN_PROGRESS},
		{Id: 2, Status: clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, DurationMs: 120},
		{Id: 1, Status: clusterv1.CheckpointStatus_CHECKPOINT_STATUS_COMPLETED, DurationMs: 900}}}
	if got, want := formatProgress(job, stats, cks), "records/s in 25.0k/s  out 900/s  checkpoints 2 (last 120ms)  backpressure HIGH"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got, want := formatProgress(job, &clusterv1.GetVertexStatsResponse{}, nil), "records/s in —  out —  checkpoints 0  backpressure —"; got != want {
		t.Errorf("before samples: got %q, want %q", got, want)
	}
}

// On a terminal the progress line is redrawn in place and cleared before
// a status line.
func TestPrinterTerminal(t *testing.T) {
	var b bytes.Buffer
	p := &printer{w: &b, tty: true}
	p.progress("a")
	p.progress("b")
	p.line("RUNNING")
	p.progress("c")
	p.clear()
	if got, want := b.String(), "\r\033[Ka\r\033[Kb\r\033[KRUNNING\n\r\033[Kc\r\033[K"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
