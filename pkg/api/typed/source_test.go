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
	"github.com/flowrt/flow/pkg/flowtest"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// idEvent is what the range source emits.
type idEvent struct {
	ID int64 `json:"id"`
}

// rangeSplit is ids [Next, To) still to read.
type rangeSplit struct {
	Next int64 `json:"next"`
	To   int64 `json:"to"`
}

// rangeSource reads ids 0..count-1 cut into `splits` ranges, 50 per Next
// call and a call every 2ms, each with its id as idEvent time.
type rangeSource struct {
	typed.SourceBase
	count, parts int64
	splits       []rangeSplit
	restored     *restoreLog
}

// restoreLog records how many splits each restored subtask got.
type restoreLog struct {
	mu    sync.Mutex
	sizes []int
}

func (s *rangeSource) Open(ctx api.Context) error {
	info := ctx.Info()
	for k := int64(info.SubtaskIndex); k < s.parts; k += int64(info.Parallelism) {
		s.splits = append(s.splits, rangeSplit{Next: k * s.count / s.parts, To: (k + 1) * s.count / s.parts})
	}
	return nil
}

func (s *rangeSource) Next(out *typed.SourceContext[idEvent]) (api.SourceStatus, error) {
	for len(s.splits) > 0 && s.splits[0].Next >= s.splits[0].To {
		s.splits = s.splits[1:]
	}
	if len(s.splits) == 0 {
		out.EmitWatermark(api.MaxWatermark)
		return api.SourceStatus{End: true}, nil
	}
	sp := &s.splits[0]
	for n := 0; n < 50 && sp.Next < sp.To; n++ {
		if err := out.EmitAt(idEvent{ID: sp.Next}, sp.Next); err != nil {
			return api.SourceStatus{}, err
		}
		sp.Next++
	}
	out.EmitWatermark(sp.Next - 1)
	return api.SourceStatus{WaitUntil: time.Now().Add(2 * time.Millisecond)}, nil
}

func (s *rangeSource) Splits() ([]rangeSplit, error) { return slices.Clone(s.splits), nil }

func (s *rangeSource) RestoreSplits(splits []rangeSplit) error {
	s.restored.mu.Lock()
	s.restored.sizes = append(s.restored.sizes, len(splits))
	s.restored.mu.Unlock()
	s.splits = splits
	return nil
}

// DivideSplits halves the largest remaining range until there are n.
func (s *rangeSource) DivideSplits(splits []rangeSplit, n int) ([]rangeSplit, error) {
	out := slices.Clone(splits)
	for len(out) < n {
		big := 0
		for i, sp := range out {
			if sp.To-sp.Next > out[big].To-out[big].Next {
				big = i
			}
		}
		sp := out[big]
		if sp.To-sp.Next < 2 {
			break
		}
		mid := sp.Next + (sp.To-sp.Next)/2
		out[big] = rangeSplit{Next: sp.Next, To: mid}
		out = append(out, rangeSplit{Next: mid, To: sp.To})
	}
	return out, nil
}

// idSink collects the ids it receives and whether each came with its id
// as timestamp.
type idSink struct {
	typed.SinkBase
	t *memTable
}

func (s idSink) Write(ctx *typed.SinkContext, in idEvent) error {
	s.t.add(fmt.Sprintf("%08d/%v", in.ID, ctx.Timestamp() == in.ID))
	return nil
}

// windowRow is a window operator's result.
type windowRow struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	Count int64 `json:"count"`
}

type windowSink struct {
	typed.SinkBase
	t *memTable
}

func (s windowSink) Write(_ *typed.SinkContext, in windowRow) error {
	s.t.add(fmt.Sprintf("%d-%d:%d", in.Start, in.End, in.Count))
	return nil
}

func rangeRegistry(t *testing.T, out *memTable, restored *restoreLog) *api.Registry {
	t.Helper()
	reg := api.Default.Clone()
	if err := typed.RegisterSource(reg, typed.SourceDefinition[idEvent, rangeSplit]{
		Name: "test-range",
		Fields: []api.Field{
			{Name: "count", Type: api.TypeInt, Default: int64(1000)},
			{Name: "splits", Type: api.TypeInt, Default: int64(2)},
		},
		Watermarks: true,
		New: func(cfg api.Config) (typed.SourceFunction[idEvent, rangeSplit], error) {
			return &rangeSource{count: cfg.Int("count"), parts: cfg.Int("splits"), restored: restored}, nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	if err := typed.RegisterSink(reg, typed.SinkDefinition[idEvent]{
		Name: "test-ids",
		New:  func(api.Config) (typed.SinkFunction[idEvent], error) { return idSink{t: out}, nil },
	}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestSourceOnCluster: a typed source emits typed values with their idEvent
// times; a stop with a savepoint and a restore at a higher parallelism
// than it has splits (divided by its SplitDivider) read every id exactly
// once in total; its watermarks drive an idEvent-time window downstream
// without a watermarks section.
func TestSourceOnCluster(t *testing.T) {
	const count = 12000
	out, restored, windows := &memTable{}, &restoreLog{}, &memTable{}
	reg := rangeRegistry(t, out, restored)
	if err := typed.RegisterSink(reg, typed.SinkDefinition[windowRow]{
		Name: "test-windows",
		New:  func(api.Config) (typed.SinkFunction[windowRow], error) { return windowSink{t: windows}, nil },
	}); err != nil {
		t.Fatal(err)
	}
	c := flowtest.Start(t, flowtest.Options{Registry: reg, TaskManagers: 2, Slots: 4})
	spec := func(p int) string {
		return fmt.Sprintf(`name: typed-source
operators:
  - {id: src, uid: src, type: test-range, parallelism: %d, config: {count: %d, splits: 2}}
  - {id: ids, uid: ids, type: test-ids, inputs: [src], parallelism: 2}
checkpoints: {interval: 100ms}
`, p, count)
	}
	id := c.SubmitSpec(spec(2))
	c.AwaitStatus(id, flowtest.Running, 30*time.Second)
	c.AwaitMetric("flow_operator_records_in_total", 2000, 30*time.Second, "flow_job", id, "operator", "ids")
	sp := c.Savepoint(id, true)
	out.mu.Lock()
	first := len(out.rows)
	out.mu.Unlock()
	if first == 0 || first >= count {
		t.Fatalf("the first run wrote %d of %d ids: the savepoint should cut the input", first, count)
	}
	id = c.SubmitRequest(&clusterv1.SubmitJobRequest{Graph: c.ParseSpec(spec(4)), RestorePath: sp})
	c.AwaitStatus(id, flowtest.Finished, 2*time.Minute)

	out.mu.Lock()
	got := slices.Sorted(slices.Values(out.rows))
	out.mu.Unlock()
	want := make([]string, count)
	for i := range want {
		want[i] = fmt.Sprintf("%08d/true", i)
	}
	if !slices.Equal(got, want) {
		missing, dup := 0, 0
		seen := map[string]int{}
		for _, r := range got {
			seen[r]++
		}
		for _, w := range want {
			if seen[w] == 0 {
				missing++
			}
			if seen[w] > 1 {
				dup++
			}
		}
		t.Fatalf("%d rows over both runs, want %d: %d ids missing, %d twice (first %q)", len(got), count, missing, dup, got[:min(3, len(got))])
	}
	restored.mu.Lock()
	sizes := slices.Clone(restored.sizes)
	restored.mu.Unlock()
	busy := 0
	for _, n := range sizes {
		if n > 0 {
			busy++
		}
	}
	if len(sizes) != 4 || busy != 4 {
		t.Fatalf("restored subtasks got %v splits: want 4 subtasks with a split each (2 splits divided for parallelism 4)", sizes)
	}

	// The source's own watermarks drive idEvent time: a tumbling window
	// needs no watermarks section on it.
	w := c.SubmitSpec(`name: typed-source-window
operators:
  - {id: src, type: test-range, config: {count: 3000, splits: 3}, parallelism: 3}
  - {id: win, type: window, inputs: [src], keyBy: "'all'", config: {size: 1s}}
  - {id: out, type: test-windows, inputs: [win]}
`)
	c.AwaitStatus(w, flowtest.Finished, time.Minute)
	windows.mu.Lock()
	gotW := slices.Sorted(slices.Values(windows.rows))
	windows.mu.Unlock()
	if wantW := []string{"0-1000:1000", "1000-2000:1000", "2000-3000:1000"}; !slices.Equal(gotW, wantW) {
		t.Fatalf("windows over event times 0..2999ms: %q, want %q", gotW, wantW)
	}
}

// A split the codec cannot read is an error naming the type and the
// split, not a crash or an empty restore.
func TestSourceCorruptSplit(t *testing.T) {
	typ, err := typed.SourceType(typed.SourceDefinition[idEvent, rangeSplit]{
		Name: "test-range",
		New: func(api.Config) (typed.SourceFunction[idEvent, rangeSplit], error) {
			return &rangeSource{restored: &restoreLog{}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	src, err := typ.NewSource(api.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ss := src.(api.SplitSource)
	err = ss.RestoreSplits([][]byte{[]byte(`{"next":1,"to":2}`), []byte(`{"next":`)})
	if err == nil || !strings.Contains(err.Error(), `typed source type "test-range": split 1 of the snapshot`) {
		t.Fatalf("restore of a corrupt split: %v", err)
	}
	if _, err := typed.SourceType(typed.SourceDefinition[idEvent, rangeSplit]{Name: "no-new"}); err == nil {
		t.Fatal("a source definition without New was accepted")
	}
	if typ.Watermarks {
		t.Fatal("Watermarks set without being asked for")
	}
}
