package typed_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/typed"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/flowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type genRecord struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
}

type keyTS struct {
	Key string `json:"key"`
	TS  int64  `json:"ts"`
}

// echoAtWatermark holds each record until the watermark reaches it (an
// event-time timer at its timestamp) and emits (key, ts) from OnTimer;
// records with value >= 900 also go to side output "big" at once.
type echoAtWatermark struct{ typed.Base[keyTS] }

var big = typed.NewOutputTag[genRecord]("big", nil)

func (echoAtWatermark) ProcessElement(ctx *typed.Context[keyTS], in genRecord) error {
	if in.Value >= 900 {
		if err := big.Emit(ctx, in); err != nil {
			return err
		}
	}
	return ctx.Timers().RegisterEventTime(ctx.Timestamp())
}

func (echoAtWatermark) OnTimer(ctx *typed.Context[keyTS], t typed.Timer) error {
	return ctx.Emit(keyTS{Key: string(ctx.CurrentKey()), TS: t.Timestamp})
}

// wantsString cannot decode datagen's records (value is a number).
type wantsString struct {
	typed.Base[string]
}

func (wantsString) ProcessElement(ctx *typed.Context[string], in struct{ Value string }) error {
	return ctx.Emit(in.Value)
}

func clusterRegistry(t *testing.T) *api.Registry {
	reg := api.Default.Clone()
	if err := typed.Register(reg, typed.Definition[genRecord, keyTS]{
		Name: "test-echo", Capabilities: typed.Capabilities{EventTimers: true, SideOutputs: []string{"big"}},
		New: func(api.Config) (typed.KeyedProcessFunction[genRecord, keyTS], error) { return echoAtWatermark{}, nil },
	}); err != nil {
		t.Fatal(err)
	}
	if err := typed.Register(reg, typed.Definition[struct{ Value string }, string]{
		Name: "test-wants-string",
		New: func(api.Config) (typed.KeyedProcessFunction[struct{ Value string }, string], error) {
			return wantsString{}, nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	return reg
}

func readLines(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	var out []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			out = append(out, sc.Text())
		}
		fh.Close()
	}
	sort.Strings(out)
	return out
}

// TestOnCluster runs typed functions on an embedded cluster: event-time
// timers fire once per record with its key and timestamp, the side output
// carries exactly the big values, codec errors are skipped with onError:
// skip and fail the job without it, and the JobManager refuses a graph
// submitted from Go whose source lost its watermarks.
func TestOnCluster(t *testing.T) {
	const records, keys = 3000, 30
	reg := clusterRegistry(t)
	c := flowtest.Start(t, flowtest.Options{Registry: reg, TaskManagers: 2, Slots: 2})
	mainDir, bigDir := t.TempDir(), t.TempDir()
	spec := fmt.Sprintf(`name: echo
operators:
  - {id: gen, type: datagen, config: {count: %d, keys: %d}, watermarks: {timestamp: ts}}
  - {id: echo, type: test-echo, inputs: [gen], keyBy: key, parallelism: 2}
  - {id: main, type: typed-output, inputs: [echo], config: {output: main}}
  - {id: big, type: typed-output, inputs: [echo], config: {output: big}}
  - {id: mainOut, type: file, inputs: [main], config: {path: %q}}
  - {id: bigOut, type: file, inputs: [big], config: {path: %q}}
checkpoints: {interval: 200ms}
`, records, keys, mainDir, bigDir)
	c.AwaitStatus(c.SubmitSpec(spec), flowtest.Finished, 2*time.Minute)

	var wantMain, wantBig []string
	for n := range int64(records) {
		k := fmt.Sprintf("k%d", datagen.KeyIndex(0, keys, n))
		wantMain = append(wantMain, fmt.Sprintf(`{"key":%q,"ts":%d}`, k, n))
		if v := datagen.Value(0, n); v >= 900 {
			wantBig = append(wantBig, fmt.Sprintf(`{"key":%q,"value":%d}`, k, v))
		}
	}
	sort.Strings(wantMain)
	sort.Strings(wantBig)
	if got := readLines(t, mainDir); strings.Join(got, "\n") != strings.Join(wantMain, "\n") {
		t.Errorf("main output: %d lines, want %d; first %q", len(got), len(wantMain), got[:min(3, len(got))])
	}
	if got := readLines(t, bigDir); strings.Join(got, "\n") != strings.Join(wantBig, "\n") || len(wantBig) == 0 {
		t.Errorf("side output big: %d lines, want %d; first %q", len(got), len(wantBig), got[:min(3, len(got))])
	}

	// Codec errors are record errors: skipped and counted with onError: skip.
	bad := `name: bad
operators:
  - {id: gen, type: datagen, config: {count: %d, rate: 500}}
  - {id: str, type: test-wants-string, inputs: [gen], keyBy: key, onError: %s}
  - {id: out, type: blackhole, inputs: [str]}
`
	id := c.SubmitSpec(fmt.Sprintf(bad, 1_000_000, "skip"))
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	deadline := time.Now().Add(time.Minute)
	for c.Metric("flow_operator_records_skipped_total", "operator", "str") < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("skipped %v records, want 50", c.Metric("flow_operator_records_skipped_total", "operator", "str"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Cancel(id)
	// ... and fail the job (no restarts) naming the type and codec without.
	id = c.SubmitSpec(fmt.Sprintf(bad, 50, "fail") + "restart: {strategy: none}\n")
	d := c.AwaitStatus(id, flowtest.Failed, time.Minute)
	if msg := d.GetSummary().GetFailure(); !strings.Contains(msg, `type "test-wants-string": input record`) || !strings.Contains(msg, "record-json:") {
		t.Errorf("failure %q: want the type and codec named", msg)
	}

	// The JobManager runs the same check on graphs from Go.
	g := c.ParseSpec(spec)
	for _, v := range g.GetVertices() {
		v.Watermarks = nil
	}
	_, err := c.Client().SubmitJob(t.Context(), &clusterv1.SubmitJobRequest{Graph: g})
	if err == nil || !strings.Contains(err.Error(), `source "gen" upstream assigns no watermarks`) {
		t.Errorf("submit without watermarks: err = %v", err)
	}
}
