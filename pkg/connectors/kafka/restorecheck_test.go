package kafka

import (
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
)

// viewOf is the RestoreView of a source snapshot taken by srcAttempt, with
// the new config raw.
func viewOf(t *testing.T, sn *snap, raw map[string]any) api.RestoreView {
	t.Helper()
	typ := SourceType()
	cfg, err := typ.DecodeConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	v := api.RestoreView{UID: "src", Config: cfg, ListStates: map[string][][]byte{}}
	for _, b := range sn.splits {
		v.Splits = append(v.Splits, api.RestoredSplit{Data: b})
	}
	for _, states := range sn.state {
		for _, st := range states {
			v.ListStates[st.Spec.Name] = append(v.ListStates[st.Spec.Name], st.Items...)
		}
	}
	return v
}

// TestCheckRestoreCases runs the restore check on the state of real source
// subtasks (topics in and ev-1) against other configs: a topicPattern that
// drops in, an added topic in a bounded job, and a corrupt split.
func TestCheckRestoreCases(t *testing.T) {
	addr := broker(t, map[string]int32{"in": 2, "ev-1": 1, "new": 1})
	produce(t, addr, "in", 0, 40, 10)
	produce(t, addr, "ev-1", 0, 10, 10)
	a := startSources(t, addr, 2, nil, map[string]any{"topics": []any{"in", "ev-1"}})
	a.run(50)
	sn := a.snapshot(1)
	a.close()

	rc, err := checkRestore(viewOf(t, sn, map[string]any{"brokers": []any{addr}, "topicPattern": "ev-.*"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rc.Removed, ",") != "in" || len(rc.Added) != 0 || rc.Now != "topicPattern ev-.*" || len(rc.Notes) != 1 || len(rc.Streams) != 2 {
		t.Fatalf("topicPattern ev-.*: %+v", rc)
	}
	total := int64(0)
	for _, s := range rc.Streams {
		for _, p := range s.Partitions {
			total += p.Offset
		}
	}
	if total != 50 || rc.Streams[0].Name != "ev-1" || rc.Streams[1].Name != "in" || len(rc.Streams[1].Partitions) != 2 || rc.Streams[1].Known != 2 {
		t.Fatalf("streams (offsets summing to %d, want 50): %+v", total, rc.Streams)
	}

	rc, err = checkRestore(viewOf(t, sn, map[string]any{"brokers": []any{addr}, "topics": []any{"ev-1", "in", "new"}, "stoppingOffsets": "latest"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Removed) != 0 || strings.Join(rc.Added, ",") != "new" || len(rc.Notes) != 1 || !strings.Contains(rc.Notes[0], "bounded") {
		t.Fatalf("a superset in a bounded job: %+v", rc)
	}

	v := viewOf(t, sn, map[string]any{"brokers": []any{addr}, "topics": []any{"in"}})
	v.Splits = append(v.Splits, api.RestoredSplit{Data: []byte(`{"v":7,"topic":"in"}`)})
	if _, err := checkRestore(v); err == nil || !strings.Contains(err.Error(), "format version 7") {
		t.Fatalf("a split of an unknown version: %v", err)
	}
}
