package statebackend_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

func TestOperatorStateRedistribute(t *testing.T) {
	// Three old subtasks, each with a split list, a union list and a
	// broadcast map.
	var snaps [][]statebackend.OperatorState
	for i := 0; i < 3; i++ {
		s := statebackend.NewOperatorStore()
		split, err := api.GetOperatorListState(s, api.OperatorListStateDescriptor[string]{Name: "offsets", Codec: api.StringCodec()})
		if err != nil {
			t.Fatal(err)
		}
		union, err := api.GetOperatorListState(s, api.OperatorListStateDescriptor[int64]{Name: "seen", Codec: api.Int64Codec(), Union: true})
		if err != nil {
			t.Fatal(err)
		}
		bc, err := api.GetBroadcastState(s, api.BroadcastStateDescriptor[string, int64]{Name: "rules", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec()})
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 2; j++ {
			if err := split.Add(fmt.Sprintf("p%d-%d", i, j)); err != nil {
				t.Fatal(err)
			}
		}
		if err := union.Add(int64(i)); err != nil {
			t.Fatal(err)
		}
		if err := bc.Put("limit", 10); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s.Snapshot())
	}
	parts, err := statebackend.Redistribute(snaps, 4)
	if err != nil {
		t.Fatal(err)
	}
	var allSplit []string
	for i, part := range parts {
		s := statebackend.NewOperatorStore()
		if err := s.Restore(part); err != nil {
			t.Fatal(err)
		}
		split, _ := api.GetOperatorListState(s, api.OperatorListStateDescriptor[string]{Name: "offsets", Codec: api.StringCodec()})
		got, err := split.Get()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) < 1 || len(got) > 2 {
			t.Fatalf("subtask %d got %d split elements, want 1 or 2", i, len(got))
		}
		allSplit = append(allSplit, got...)
		union, _ := api.GetOperatorListState(s, api.OperatorListStateDescriptor[int64]{Name: "seen", Codec: api.Int64Codec(), Union: true})
		if u, _ := union.Get(); !slices.Equal(u, []int64{0, 1, 2}) {
			t.Fatalf("subtask %d union = %v", i, u)
		}
		bc, _ := api.GetBroadcastState(s, api.BroadcastStateDescriptor[string, int64]{Name: "rules", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec()})
		if v, ok, err := bc.Get("limit"); err != nil || !ok || v != 10 {
			t.Fatalf("subtask %d broadcast = %d %v %v", i, v, ok, err)
		}
		// Declaring with another mode is a conflict naming the state.
		if _, err := api.GetOperatorListState(s, api.OperatorListStateDescriptor[int64]{Name: "seen", Codec: api.Int64Codec()}); !errors.Is(err, api.ErrStateConflict) {
			t.Fatalf("mode change: %v", err)
		}
	}
	want := []string{"p0-0", "p0-1", "p1-0", "p1-1", "p2-0", "p2-1"}
	if !slices.Equal(allSplit, want) {
		t.Fatalf("split elements %v, want %v", allSplit, want)
	}
	if _, err := statebackend.Redistribute(snaps, 0); err == nil {
		t.Fatal("zero parallelism accepted")
	}
}
