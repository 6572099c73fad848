package runtime

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flowrt/flow/pkg/barrier"
	"github.com/flowrt/flow/pkg/statebackend"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// A task of a graph stored by an older JobManager (legacy JSON sections)
// configures its barriers and state backend exactly as a task of the same
// graph with typed sections does.
func TestTaskConfigFromLegacyAndTypedGraphs(t *testing.T) {
	cases := []struct {
		name          string
		legacy, typed *jobgraphv1.JobGraph
		barrier       barrier.Config
		backend       string
	}{{
		name:    "defaults",
		legacy:  &jobgraphv1.JobGraph{},
		typed:   &jobgraphv1.JobGraph{CheckpointConfig: &jobgraphv1.CheckpointConfig{}, StateBackendConfig: &jobgraphv1.StateBackendConfig{}},
		barrier: barrier.Config{Channels: 2, Mode: barrier.ModeAligned},
		backend: StateBackendHeap,
	}, {
		name: "unaligned with aligned timeout, pebble",
		legacy: &jobgraphv1.JobGraph{Checkpoints: []byte(`{"mode":"exactly_once","unaligned":true,"alignedTimeout":100000000}`),
			StateBackend: []byte(`{"type":"pebble","memtableSize":4194304,"compression":"zstd"}`)},
		typed: &jobgraphv1.JobGraph{
			CheckpointConfig:   &jobgraphv1.CheckpointConfig{Unaligned: true, AlignedTimeout: durationpb.New(100 * time.Millisecond)},
			StateBackendConfig: &jobgraphv1.StateBackendConfig{Type: "pebble", MemtableSize: 4 << 20, Compression: "zstd"}},
		barrier: barrier.Config{Channels: 2, Mode: barrier.ModeAligned, AlignedTimeout: 100 * time.Millisecond},
		backend: StateBackendPebble,
	}, {
		name:   "unaligned",
		legacy: &jobgraphv1.JobGraph{Checkpoints: []byte(`{"mode":"exactly_once","unaligned":true}`)},
		typed: &jobgraphv1.JobGraph{CheckpointConfig: &jobgraphv1.CheckpointConfig{
			Mode: jobgraphv1.CheckpointMode_CHECKPOINT_MODE_EXACTLY_ONCE, Unaligned: true}},
		barrier: barrier.Config{Channels: 2, Mode: barrier.ModeUnaligned},
		backend: StateBackendHeap,
	}, {
		name:    "at least once",
		legacy:  &jobgraphv1.JobGraph{Checkpoints: []byte(`{"mode":"at_least_once"}`)},
		typed:   &jobgraphv1.JobGraph{CheckpointConfig: &jobgraphv1.CheckpointConfig{Mode: jobgraphv1.CheckpointMode_CHECKPOINT_MODE_AT_LEAST_ONCE}},
		barrier: barrier.Config{Channels: 2, Mode: barrier.ModeAtLeastOnce},
		backend: StateBackendHeap,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for form, g := range map[string]*jobgraphv1.JobGraph{"legacy": tc.legacy, "typed": tc.typed} {
				ck, err := g.EffectiveCheckpointConfig()
				if err != nil {
					t.Fatalf("%s: %v", form, err)
				}
				if got := barrierConfig(ck, 2); got != tc.barrier {
					t.Errorf("%s: barrier config %+v, want %+v", form, got, tc.barrier)
				}
				sb, err := newStateBackend(g)
				if err != nil {
					t.Fatalf("%s: %v", form, err)
				}
				if sb.factory.Name() != tc.backend {
					t.Errorf("%s: backend %s, want %s", form, sb.factory.Name(), tc.backend)
				}
			}
			l, _ := newStateBackend(tc.legacy)
			ty, _ := newStateBackend(tc.typed)
			if !proto.Equal(l.cfg, ty.cfg) {
				t.Errorf("state backend config: legacy %v, typed %v", l.cfg, ty.cfg)
			}
		})
	}
}

func TestTaskConfigRejectsUnknownBackendAndMode(t *testing.T) {
	for _, g := range []*jobgraphv1.JobGraph{
		{StateBackendConfig: &jobgraphv1.StateBackendConfig{Type: "rocksdb"}},
		{StateBackend: []byte(`{"type":"rocksdb"}`)},
	} {
		if _, err := newStateBackend(g); !errors.Is(err, statebackend.ErrUnknownBackend) {
			t.Errorf("backend of %v: got %v, want ErrUnknownBackend", g, err)
		}
	}
	for _, g := range []*jobgraphv1.JobGraph{
		{CheckpointConfig: &jobgraphv1.CheckpointConfig{Mode: 7}},
		{Checkpoints: []byte(`{"mode":"sometimes"}`)},
	} {
		if _, err := g.EffectiveCheckpointConfig(); !errors.Is(err, jobgraphv1.ErrInvalidConfig) {
			t.Errorf("checkpoints of %v: got %v, want ErrInvalidConfig", g, err)
		}
	}
}
