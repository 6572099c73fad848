package savepoint_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/jobspec"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	"github.com/flowrt/flow/pkg/statebackend/heap"
	"github.com/flowrt/flow/pkg/statebackend/pebble"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Pebble starts background goroutines; they must all stop on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// profileV1 is the value of the "profile" operator's state; profileV2
// adds a field (a compatible JSON change: same codec id).
type profileV1 struct {
	Clicks int64  `json:"clicks"`
	Last   string `json:"last"`
}

type profileV2 struct {
	Clicks int64  `json:"clicks"`
	Last   string `json:"last"`
	Plan   string `json:"plan"`
}

// variant selects what the "profile" operator declares, modelling
// successive versions of a user's job.
type variant int

const (
	v1           variant = iota // profile: value json:profile; seen: map string->int64; recent: list json:visit v1 with TTL; timers; operator list "batches"
	v2AddField                  // profile's struct gains a field (same codec id)
	vRenamed                    // "profile" renamed to "user-profile"
	vKindChange                 // "profile" becomes a list state
	vCodecChange                // "profile" stored with another JSON codec name
	vNoKeyed                    // declares no keyed state at all (state dropped)
)

// profileOp is a keyed operator with several kinds of state, used to fill
// savepoints through the real SDK getters and to be dry-run by Check.
type profileOp struct {
	v       variant
	p1      *api.ValueState[profileV1]
	p2      *api.ValueState[profileV2]
	seen    *api.MapState[string, int64]
	recent  *api.ListState[profileV1]
	timers  api.TimerService
	batches *api.OperatorListState[int64]
	n       int64
}

func (o *profileOp) Open(ctx api.Context) error {
	ops, err := api.OperatorStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.batches, err = api.GetOperatorListState(ops, api.OperatorListStateDescriptor[int64]{Name: "batches", Codec: api.Int64Codec()}); err != nil {
		return err
	}
	if o.v == vNoKeyed {
		return nil
	}
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return err
	}
	if o.timers, err = api.TimerServiceOf(ctx); err != nil {
		return err
	}
	switch o.v {
	case v1:
		o.p1, err = api.GetValueState(store, api.ValueStateDescriptor[profileV1]{Name: "profile", Codec: &api.JSONCodec[profileV1]{Name: "profile"}})
	case v2AddField:
		o.p2, err = api.GetValueState(store, api.ValueStateDescriptor[profileV2]{Name: "profile", Codec: &api.JSONCodec[profileV2]{Name: "profile"}})
	case vRenamed:
		o.p1, err = api.GetValueState(store, api.ValueStateDescriptor[profileV1]{Name: "user-profile", Codec: &api.JSONCodec[profileV1]{Name: "profile"}})
	case vKindChange:
		_, err = api.GetListState(store, api.ListStateDescriptor[profileV1]{Name: "profile", Codec: &api.JSONCodec[profileV1]{Name: "profile"}})
	case vCodecChange:
		o.p1, err = api.GetValueState(store, api.ValueStateDescriptor[profileV1]{Name: "profile", Codec: &api.JSONCodec[profileV1]{Name: "profile-v2"}})
	}
	if err != nil {
		return err
	}
	if o.seen, err = api.GetMapState(store, api.MapStateDescriptor[string, int64]{Name: "seen", KeyCodec: api.StringCodec(), ValueCodec: api.Int64Codec()}); err != nil {
		return err
	}
	o.recent, err = api.GetListState(store, api.ListStateDescriptor[profileV1]{Name: "recent", Codec: &api.JSONCodec[profileV1]{Name: "visit", Version: 1},
		TTL: &api.TTLConfig{TTL: time.Hour}})
	return err
}

// ProcessRecord (v1 only; used to fill savepoints): the value is a page name.
func (o *profileOp) ProcessRecord(r api.Record, out api.Collector) error {
	p, err := o.p1.Value()
	if err != nil {
		return err
	}
	p.Clicks++
	p.Last = string(r.Value)
	if err := o.p1.Update(p); err != nil {
		return err
	}
	c, _, err := o.seen.Get(string(r.Value))
	if err != nil {
		return err
	}
	if err := o.seen.Put(string(r.Value), c+1); err != nil {
		return err
	}
	if err := o.recent.Add(p); err != nil {
		return err
	}
	o.n++
	if err := o.batches.Update([]int64{o.n}); err != nil {
		return err
	}
	return o.timers.RegisterEventTimeTimer(r.Timestamp+1000, nil)
}

func (o *profileOp) Finish(api.Collector) error { return nil }
func (o *profileOp) Close() error               { return nil }

// registry returns a registry with the built-in types and the "profile"
// operator in the given variant.
func registry(t testing.TB, v variant) *api.Registry {
	t.Helper()
	reg := api.NewRegistry()
	for _, typ := range api.Default.Types() {
		if err := reg.Register(*typ); err != nil {
			t.Fatal(err)
		}
	}
	err := reg.Register(api.OperatorType{
		Name: "profile", Kind: api.KindOperator, Keyed: true, Doc: "test operator with value, map, timer and operator state",
		NewOperator: func(api.Config) (api.Operator, error) { return &profileOp{v: v}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// jobSpec is the test job: a datagen source, the profile operator keyed by
// key, a built-in count, and a blackhole sink. par is the keyed operators'
// parallelism; maxPar 0 leaves the default.
func jobSpec(par, maxPar int, withCount bool) string {
	s := "name: profiles\nparallelism: 1\n"
	if maxPar > 0 {
		s += fmt.Sprintf("maxParallelism: %d\n", maxPar)
	}
	s += `operators:
  - id: gen
    type: datagen
    config:
      count: 10
  - id: profile
    type: profile
    uid: profile-uid
    inputs: [gen]
    keyBy: key
`
	s += fmt.Sprintf("    parallelism: %d\n", par)
	last := "profile"
	if withCount {
		s += fmt.Sprintf(`  - id: count
    type: count
    inputs: [profile]
    keyBy: key
    parallelism: %d
`, par)
		last = "count"
	}
	s += fmt.Sprintf(`  - id: out
    type: blackhole
    inputs: [%s]
`, last)
	return s
}

func parseJob(t testing.TB, reg *api.Registry, spec string) *jobgraphv1.JobGraph {
	t.Helper()
	g, err := jobspec.Parse([]byte(spec), "job.yaml", reg, nil)
	if err != nil {
		t.Fatalf("parse job spec: %v\n%s", err, spec)
	}
	return g
}

// testContext is the api.Context a savepoint-building subtask opens its
// operator with: the real backend and operator store.
type testContext struct {
	info  api.TaskInfo
	keyed statebackend.Backend
	ops   *statebackend.OperatorStore
	dir   string
}

func (c *testContext) Info() api.TaskInfo                         { return c.info }
func (c *testContext) Logger() *slog.Logger                       { return slog.New(slog.DiscardHandler) }
func (c *testContext) Metrics() prometheus.Registerer             { return prometheus.NewRegistry() }
func (c *testContext) Clock() api.Clock                           { return fixedClock{} }
func (c *testContext) Done() <-chan struct{}                      { return nil }
func (c *testContext) DataDir() string                            { return c.dir }
func (c *testContext) KeyedStateStore() api.KeyedStateStore       { return c.keyed }
func (c *testContext) TimerService() api.TimerService             { return c.keyed }
func (c *testContext) OperatorStateStore() api.OperatorStateStore { return c.ops }

type fixedClock struct{}

func (fixedClock) Now() time.Time { return time.UnixMilli(1_767_225_600_000) }

type discard struct{}

func (discard) Collect(api.Record) {}

// buildOptions shape a test savepoint.
type buildOptions struct {
	// Pebble uses Pebble backends (written canonically, as savepoints are).
	Pebble bool
	// Records are fed to every keyed operator, each to the subtask owning
	// its key.
	Records []api.Record
	// SourcePosition is stored for each source subtask.
	SourcePosition []byte
	// Checkpoint writes a retained checkpoint (<parent>/<job>/chk-7,
	// native incremental files for Pebble) instead of a savepoint.
	Checkpoint bool
}

const testJobID = "0123456789abcdef"

// buildSavepoint runs the keyed operators of graph on real backends over
// opts.Records, takes a savepoint of every subtask with the snapshot
// package and writes its `_metadata` with storage, in a new directory
// under parent. It returns the savepoint directory.
func buildSavepoint(t testing.TB, reg *api.Registry, graph *jobgraphv1.JobGraph, parent string, opts buildOptions) string {
	t.Helper()
	ctx := context.Background()
	const id = 7
	name := "savepoint-" + graph.GetName()
	root, err := storage.Open(ctx, "file://"+parent)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	target := snapshot.Target{Store: root, Dir: storage.CheckpointDir(testJobID, id), SharedDir: storage.SharedDir(testJobID)}
	mode := snapshot.Checkpoint
	if opts.Checkpoint {
		name = target.Dir
	} else {
		dirStore, err := root.Sub(name)
		if err != nil {
			t.Fatal(err)
		}
		target, mode = snapshot.Target{Store: dirStore}, snapshot.Savepoint
	}
	maxPar := int(graph.GetMaxParallelism())
	md := &checkpointv1.CheckpointMetadata{
		FormatVersion: 1, JobId: testJobID, JobName: graph.GetName(), CheckpointId: id,
		TriggerTimeMs: 1_767_225_600_000, CompletionTimeMs: 1_767_225_600_250, Savepoint: !opts.Checkpoint, Graph: graph,
	}
	for _, v := range graph.GetVertices() {
		par := jobgraph.VertexParallelism(graph, v)
		uid := v.GetUid()
		if uid == "" {
			uid = v.GetId()
		}
		ost := &checkpointv1.OperatorState{Uid: uid, OperatorId: v.GetId(), Type: v.GetType(),
			Parallelism: int32(par), MaxParallelism: int32(maxPar)}
		for sub := 0; sub < par; sub++ {
			target.Name = fmt.Sprintf("%s-%d", uid, sub)
			st, descs := snapshotSubtask(t, reg, graph, v, uid, sub, par, opts, target, mode)
			if st != nil {
				ost.Subtasks = append(ost.Subtasks, st)
			}
			if sub == 0 {
				ost.States = descs
			}
		}
		md.Operators = append(md.Operators, ost)
	}
	if err := root.WriteMetadata(ctx, name, md); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(parent, name)
}

func snapshotSubtask(t testing.TB, reg *api.Registry, graph *jobgraphv1.JobGraph, v *jobgraphv1.Vertex, uid string, sub, par int, opts buildOptions, target snapshot.Target, mode snapshot.Mode) (*checkpointv1.SubtaskState, []*checkpointv1.StateDescriptor) {
	t.Helper()
	ctx := context.Background()
	maxPar := int(graph.GetMaxParallelism())
	snapOp := snapshot.Operator{Subtask: sub}
	var descs []*checkpointv1.StateDescriptor
	switch v.GetKind() {
	case jobgraphv1.VertexKind_VERTEX_KIND_SOURCE:
		if opts.SourcePosition == nil {
			return nil, nil
		}
		snapOp.SourcePosition = opts.SourcePosition
	case jobgraphv1.VertexKind_VERTEX_KIND_SINK:
		return nil, nil
	default:
		if v.GetKeyBy() == "" {
			return nil, nil
		}
		r := keygroup.RangeFor(maxPar, par, sub)
		bopts := statebackend.Options{KeyGroups: r, MaxParallelism: maxPar, Clock: fixedClock{}}
		var b *statebackend.Engine
		var err error
		work := t.TempDir()
		if opts.Pebble {
			b, err = pebble.Open(filepath.Join(work, "db"), pebble.Options{Options: bopts, CacheSize: 1 << 20, MemTableSize: 1 << 20})
		} else {
			b, err = heap.New(bopts)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		typ, err := reg.LookupKind(v.GetType(), api.KindOperator)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := typ.DecodeConfigJSON(v.GetConfig())
		if err != nil {
			t.Fatal(err)
		}
		op, err := typ.NewOperator(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ops := statebackend.NewOperatorStore()
		tc := &testContext{info: api.TaskInfo{OperatorID: v.GetId(), OperatorUID: uid, SubtaskIndex: sub, Parallelism: par, MaxParallelism: maxPar},
			keyed: b, ops: ops, dir: work}
		if err := op.Open(tc); err != nil {
			t.Fatal(err)
		}
		for _, rec := range opts.Records {
			kg := keygroup.Assign(rec.Key, maxPar)
			if !r.Contains(kg) {
				continue
			}
			b.SetCurrentKey(rec.Key, kg)
			if err := op.ProcessRecord(rec, discard{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := op.Close(); err != nil {
			t.Fatal(err)
		}
		k, err := snapshot.NewKeyed(b, snapshot.KeyedOptions{WorkDir: filepath.Join(work, "snap")})
		if err != nil {
			t.Fatal(err)
		}
		snapOp.Keyed, snapOp.OperatorState = k, ops
		for _, s := range b.States() {
			codec := s.ValueCodec
			if s.KeyCodec != "" {
				codec = s.KeyCodec + "->" + s.ValueCodec
			}
			descs = append(descs, &checkpointv1.StateDescriptor{Name: s.Name, Kind: s.Kind.String(), Codec: codec, Keyed: true})
		}
		for _, s := range ops.Snapshot() {
			kind := map[api.OperatorStateMode]string{api.SplitList: "operator_list", api.UnionList: "union_list", api.Broadcast: "broadcast_map"}[s.Spec.Mode]
			descs = append(descs, &checkpointv1.StateDescriptor{Name: s.Spec.Name, Kind: kind, Codec: s.Spec.ValueCodec})
		}
	}
	p, err := snapshot.Sync(7, mode, snapOp)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Async(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	return st, descs
}

// clicks returns n records over users keys: user-i visits page-(i%pages).
func clicks(n, users, pages int) []api.Record {
	out := make([]api.Record, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, api.Record{
			Key:       []byte(fmt.Sprintf("user-%d", i%users)),
			Value:     []byte(fmt.Sprintf("page-%d", i%pages)),
			Timestamp: int64(1000 + i),
		})
	}
	return out
}

// copyDir copies a directory tree (to show savepoints are relocatable).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
