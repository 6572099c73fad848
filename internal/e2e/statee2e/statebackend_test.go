package statee2e

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
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

// backendLog records which keyed state backends the tasks opened (the
// runtime logs "opened keyed state backend" with its type at debug level).
type backendLog struct {
	mu    sync.Mutex
	types map[string]int
}

func (h *backendLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *backendLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *backendLog) WithGroup(string) slog.Handler            { return h }
func (h *backendLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "opened keyed state backend" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "type" {
			h.mu.Lock()
			h.types[a.Value.String()]++
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

// runKeyedCount runs examples/keyed-count.yaml on a mini cluster with the
// given state backend and returns the sorted output lines.
func runKeyedCount(t *testing.T, backend string, records int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logs := &backendLog{types: map[string]int{}}
	c, err := minicluster.Start(ctx, minicluster.Options{TaskManagers: 2, Slots: 4, DataDir: t.TempDir(), Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	outDir := filepath.Join(t.TempDir(), "out")
	spec, err := os.ReadFile("../../../examples/keyed-count.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := jobspec.Parse(spec, "keyed-count.yaml", api.Default, []string{
		"stateBackend.type=" + backend,
		"operators.src.config.count=" + itoa(records),
		"operators.sink.config.path=" + outDir,
		"operators.count.parallelism=3",
		"checkpoints.interval=0",
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(c.JobManagerAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jm := clusterv1.NewJobManagerServiceClient(conn)
	resp, err := jm.SubmitJob(ctx, &clusterv1.SubmitJobRequest{Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	for {
		j, err := jm.GetJob(ctx, &clusterv1.GetJobRequest{JobId: resp.GetJobId()})
		if err != nil {
			t.Fatal(err)
		}
		s := j.GetJob().GetSummary()
		switch s.GetStatus() {
		case clusterv1.JobStatus_JOB_STATUS_FINISHED:
			logs.mu.Lock()
			opened := logs.types[backend]
			logs.mu.Unlock()
			if opened != 3 {
				t.Fatalf("%d %s keyed backends opened (%v), want 3 (one per count subtask)", opened, backend, logs.types)
			}
			return readLines(t, outDir)
		case clusterv1.JobStatus_JOB_STATUS_FAILED, clusterv1.JobStatus_JOB_STATUS_CANCELED, clusterv1.JobStatus_JOB_STATUS_RESTARTING:
			t.Fatalf("job %s: %v", s.GetStatus(), j.GetJob())
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job did not finish: %v", s.GetStatus())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func readLines(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "part-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no output files in %s (%v)", dir, err)
	}
	var lines []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		fh.Close()
	}
	sort.Strings(lines)
	return lines
}

// TestKeyedCountHeapEqualsPebble is the end-to-end check: the
// keyed-count example gives identical output on the heap and Pebble
// backends, and the output is right: for every key, the counts 1..N each
// exactly once, N summing to the number of records.
func TestKeyedCountHeapEqualsPebble(t *testing.T) {
	const records = 20000
	heap := runKeyedCount(t, "heap", records)
	pebble := runKeyedCount(t, "pebble", records)
	if !slices.Equal(heap, pebble) {
		t.Fatalf("heap (%d lines) and pebble (%d lines) outputs differ", len(heap), len(pebble))
	}
	counts := map[string][]int64{}
	for _, l := range heap {
		var r struct {
			Key   string `json:"key"`
			Count int64  `json:"count"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil || !strings.HasPrefix(r.Key, "k") {
			t.Fatalf("bad line %q: %v", l, err)
		}
		counts[r.Key] = append(counts[r.Key], r.Count)
	}
	if len(counts) != 100 {
		t.Fatalf("%d keys, want 100", len(counts))
	}
	total := 0
	for k, cs := range counts {
		slices.Sort(cs)
		for i, n := range cs {
			if n != int64(i+1) {
				t.Fatalf("key %s: counts are not 1..%d each once: %v", k, len(cs), cs)
			}
		}
		total += len(cs)
	}
	if total != records {
		t.Fatalf("%d records counted, want %d", total, records)
	}
}
