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

// awaitSkipped waits until operator op of the running job has skipped at
// least n records (flow_operator_records_skipped_total).
func awaitSkipped(t *testing.T, c *flowtest.Cluster, op string, n float64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for c.Metric("flow_operator_records_skipped_total", "operator", op) < n {
		if time.Now().After(deadline) {
			t.Fatalf("operator %s skipped %v records, want %v", op, c.Metric("flow_operator_records_skipped_total", "operator", op), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
  - {id: mainOut, type: file, inputs: [echo], config: {path: %q}}
  - {id: bigOut, type: file, inputs: [echo.big], config: {path: %q}}
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
	awaitSkipped(t, c, "str", 50)
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

type keyCounts struct {
	Key string `json:"key"`
	N1  int64  `json:"n1"`
	N2  int64  `json:"n2"`
}

// countBoth counts each key's records of both inputs in keyed state and
// emits the two counts from one event-time timer per key at the end of
// time: state and timers are scoped to the key whichever input the record
// came from.
type countBoth struct {
	typed.Base[keyCounts]
	n1, n2 *api.ValueState[int64]
}

const endOfTime = 1 << 50

func (f *countBoth) Open(ctx api.Context) (err error) {
	if f.n1, err = typed.Value[int64](ctx, "n1"); err != nil {
		return err
	}
	f.n2, err = typed.Value[int64](ctx, "n2")
	return err
}

func (f *countBoth) add(ctx *typed.Context[keyCounts], s *api.ValueState[int64]) error {
	n, err := s.Value()
	if err != nil {
		return err
	}
	if err := s.Update(n + 1); err != nil {
		return err
	}
	return ctx.Timers().RegisterEventTime(endOfTime)
}

func (f *countBoth) ProcessElement1(ctx *typed.Context[keyCounts], _ genRecord) error {
	return f.add(ctx, f.n1)
}

func (f *countBoth) ProcessElement2(ctx *typed.Context[keyCounts], _ genRecord) error {
	return f.add(ctx, f.n2)
}

func (f *countBoth) OnTimer(ctx *typed.Context[keyCounts], _ typed.Timer) error {
	n1, err := f.n1.Value()
	if err != nil {
		return err
	}
	n2, err := f.n2.Value()
	if err != nil {
		return err
	}
	return ctx.Emit(keyCounts{Key: string(ctx.CurrentKey()), N1: n1, N2: n2})
}

// TestCoProcessOnCluster connects two keyed datagen streams (different
// seeds, so each key has other counts in each) into a typed
// KeyedCoProcessFunction at parallelism 3 and compares each key's counts
// with a count of the same inputs computed here.
func TestCoProcessOnCluster(t *testing.T) {
	const records, keys = 2000, 40
	reg := api.Default.Clone()
	reg.MustRegister(typed.MustCoType(typed.CoDefinition[genRecord, genRecord, keyCounts]{
		Name: "test-count-both", Capabilities: typed.Capabilities{EventTimers: true},
		New: func(api.Config) (typed.KeyedCoProcessFunction[genRecord, genRecord, keyCounts], error) {
			return &countBoth{}, nil
		},
	}))
	c := flowtest.Start(t, flowtest.Options{Registry: reg, TaskManagers: 2, Slots: 4})
	out := t.TempDir()
	c.AwaitStatus(c.SubmitSpec(fmt.Sprintf(`name: co
parallelism: 2
operators:
  - {id: a, type: datagen, config: {count: %[1]d, keys: %[2]d, seed: 0}, watermarks: {timestamp: ts}}
  - {id: b, type: datagen, config: {count: %[1]d, keys: %[2]d, seed: 1}, watermarks: {timestamp: ts}}
  - {id: both, type: test-count-both, parallelism: 3, inputs: [a, b], keyBy: key}
  - {id: out, type: file, inputs: [both], config: {path: %[3]q}}
checkpoints: {interval: 200ms}
`, records, keys, out)), flowtest.Finished, 2*time.Minute)

	want := map[string]*keyCounts{}
	for seed, field := range []func(*keyCounts) *int64{
		func(k *keyCounts) *int64 { return &k.N1 }, func(k *keyCounts) *int64 { return &k.N2 },
	} {
		for n := range int64(records) {
			k := fmt.Sprintf("k%d", datagen.KeyIndex(int64(seed), keys, n))
			if want[k] == nil {
				want[k] = &keyCounts{Key: k}
			}
			*field(want[k])++
		}
	}
	var wantLines []string
	for _, k := range want {
		wantLines = append(wantLines, fmt.Sprintf(`{"key":%q,"n1":%d,"n2":%d}`, k.Key, k.N1, k.N2))
	}
	sort.Strings(wantLines)
	if got := readLines(t, out); strings.Join(got, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
}
