package typed_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/typed"
	"github.com/flowrt/flow/pkg/connectors/datagen"
	"github.com/flowrt/flow/pkg/flowtest"
)

// tsRecord is a datagen record with its ts field.
type tsRecord struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
	TS    int64  `json:"ts"`
}

// row is what the test sinks write of a record: its key (field and record
// key), value, and whether the context's timestamp is the record's ts.
func row(ctx *typed.SinkContext, in tsRecord) string {
	return fmt.Sprintf("%s/%s/%d/%v", in.Key, ctx.Key(), in.Value, ctx.Timestamp() == in.TS)
}

// memTable is an external system for the test sinks: committed rows, by
// test.
type memTable struct {
	mu        sync.Mutex
	rows      []string
	snapshots int
	commits   int
}

func (m *memTable) add(rows ...string) {
	m.mu.Lock()
	m.rows = append(m.rows, rows...)
	m.mu.Unlock()
}

// collectSink writes each value with its key and timestamp straight to
// its table.
type collectSink struct {
	typed.SinkBase
	t *memTable
}

func (s collectSink) Write(ctx *typed.SinkContext, in tsRecord) error {
	s.t.add(row(ctx, in))
	return nil
}

// stagingSink buffers values, stages them at each checkpoint and makes them
// visible when the checkpoint completes (a two-phase commit in memory):
// the buffer left at the end is committed by Finish.
type stagingSink struct {
	typed.SinkBase
	t       *memTable
	buf     []string
	staged  map[int64][]string
	written int
}

func (s *stagingSink) Write(ctx *typed.SinkContext, in tsRecord) error {
	s.buf = append(s.buf, row(ctx, in))
	return nil
}

func (s *stagingSink) SnapshotState(id int64) error {
	s.staged[id], s.buf = s.buf, nil
	s.t.mu.Lock()
	s.t.snapshots++
	s.t.mu.Unlock()
	return nil
}

func (s *stagingSink) InitializeState(bool) error { return nil }

func (s *stagingSink) NotifyCheckpointComplete(id int64) error {
	for c, rows := range s.staged { // every checkpoint up to id
		if c <= id {
			s.t.add(rows...)
			delete(s.staged, c)
		}
	}
	s.t.mu.Lock()
	s.t.commits++
	s.t.mu.Unlock()
	return nil
}

func (s *stagingSink) NotifyCheckpointAborted(int64) error { return nil }

// Finish commits what is staged and buffered; a completion that arrives
// after it (the runtime awaits the last checkpoints' notifications) finds
// nothing left to commit twice.
func (s *stagingSink) Finish() error {
	for c, rows := range s.staged {
		s.t.add(rows...)
		delete(s.staged, c)
	}
	s.t.add(s.buf...)
	s.buf = nil
	return nil
}

// TestSinkOnCluster: typed sinks on an embedded cluster receive every
// record decoded, with its key and timestamp; a sink with checkpoint hooks
// gets SnapshotState and NotifyCheckpointComplete through the adapter; a
// record its codec cannot decode is a record error (skipped with onError:
// skip).
func TestSinkOnCluster(t *testing.T) {
	const records, keys = 8000, 20
	plain, staging := &memTable{}, &memTable{}
	reg := api.Default.Clone()
	if err := typed.RegisterSink(reg, typed.SinkDefinition[tsRecord]{
		Name: "test-collect",
		New:  func(api.Config) (typed.SinkFunction[tsRecord], error) { return collectSink{t: plain}, nil },
	}); err != nil {
		t.Fatal(err)
	}
	if err := typed.RegisterSink(reg, typed.SinkDefinition[tsRecord]{
		Name: "test-staging",
		New: func(api.Config) (typed.SinkFunction[tsRecord], error) {
			return &stagingSink{t: staging, staged: map[int64][]string{}}, nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	if err := typed.RegisterSink(reg, typed.SinkDefinition[struct{ Value string }]{
		Name: "test-sink-wants-string",
		New: func(api.Config) (typed.SinkFunction[struct{ Value string }], error) {
			return wantsStringSink{}, nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := typed.SinkType(typed.SinkDefinition[tsRecord]{Name: "no-new"}); err == nil {
		t.Fatal("a sink definition without New was accepted")
	}
	c := flowtest.Start(t, flowtest.Options{Registry: reg, TaskManagers: 2, Slots: 2})
	spec := fmt.Sprintf(`name: sinks
operators:
  - {id: gen, type: datagen, config: {count: %d, keys: %d, rate: 20000}, watermarks: {timestamp: ts}}
  - {id: plain, type: test-collect, inputs: [gen], keyBy: key, parallelism: 2}
  - {id: staged, type: test-staging, inputs: [gen], keyBy: key, parallelism: 2}
checkpoints: {interval: 50ms}
`, records, keys)
	c.AwaitStatus(c.SubmitSpec(spec), flowtest.Finished, 2*time.Minute)

	var want []string
	for n := range int64(records) {
		k := fmt.Sprintf("k%d", datagen.KeyIndex(0, keys, n))
		want = append(want, fmt.Sprintf("%s/%s/%d/true", k, k, datagen.Value(0, n)))
	}
	slices.Sort(want)
	for name, tb := range map[string]*memTable{"plain": plain, "staged": staging} {
		tb.mu.Lock()
		got := slices.Sorted(slices.Values(tb.rows))
		tb.mu.Unlock()
		if !slices.Equal(got, want) {
			t.Errorf("%s sink: %d rows, want %d; first %q, want %q", name, len(got), len(want), got[:min(3, len(got))], want[:3])
		}
	}
	staging.mu.Lock()
	snaps, commits := staging.snapshots, staging.commits
	staging.mu.Unlock()
	if snaps == 0 || commits == 0 {
		t.Errorf("staging sink: %d SnapshotState and %d NotifyCheckpointComplete calls: the adapter did not forward the checkpoint hooks", snaps, commits)
	}

	// Undecodable records are record errors: skipped and counted with
	// onError: skip, failing the job (naming the type) without.
	bad := `name: bad-sink
operators:
  - {id: gen, type: datagen, config: {count: %d, rate: 500}}
  - {id: str, type: test-sink-wants-string, inputs: [gen], onError: %s}
restart: {strategy: none}
`
	id := c.SubmitSpec(fmt.Sprintf(bad, 1_000_000, "skip"))
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	awaitSkipped(t, c, "str", 50)
	c.Cancel(id)
	d := c.AwaitStatus(c.SubmitSpec(fmt.Sprintf(bad, 50, "fail")), flowtest.Failed, time.Minute)
	if msg := d.GetSummary().GetFailure(); !strings.Contains(msg, `type "test-sink-wants-string": input record`) {
		t.Errorf("failure %q: want the type named", msg)
	}
}

type wantsStringSink struct{ typed.SinkBase }

func (wantsStringSink) Write(*typed.SinkContext, struct{ Value string }) error { return nil }
