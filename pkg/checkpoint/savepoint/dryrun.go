package savepoint

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/rawstate"
)

// Declarations are the states an operator declared in a dry-run Open.
type Declarations struct {
	// Keyed are the keyed states in declaration order.
	Keyed []api.StateSpec
	// Operator are the operator (non-keyed) states in declaration order.
	Operator []api.OperatorStateSpec
	// Timers is true when the operator obtained its timer service.
	Timers bool
	// KeyedAvailable is true when the operator stands on a keyed stream
	// (its vertex has a keyBy), so it was offered keyed state.
	KeyedAvailable bool
}

// keyed returns the keyed state named name.
func (d *Declarations) keyed(name string) (api.StateSpec, bool) {
	for _, s := range d.Keyed {
		if s.Name == name {
			return s, true
		}
	}
	return api.StateSpec{}, false
}

// operator returns the operator state named name.
func (d *Declarations) operator(name string) (api.OperatorStateSpec, bool) {
	for _, s := range d.Operator {
		if s.Name == name {
			return s, true
		}
	}
	return api.OperatorStateSpec{}, false
}

// DryRun opens op once with a context that records the states it declares
// and stores nothing, then closes it. keyed says whether the operator
// stands on a keyed stream (it is offered keyed state and timers). The
// context's DataDir is a fresh temporary directory, removed afterwards;
// Done is closed after Close. A panic in Open or Close is returned as an
// error.
func DryRun(op api.Operator, info api.TaskInfo, keyed bool) (decl *Declarations, err error) {
	dir, err := os.MkdirTemp("", "flow-dry-run-")
	if err != nil {
		return nil, fmt.Errorf("dry run: %w", err)
	}
	defer os.RemoveAll(dir)
	decl = &Declarations{KeyedAvailable: keyed}
	done := make(chan struct{})
	ctx := &dryContext{info: info, dataDir: dir, done: done, decl: decl,
		logger: slog.New(slog.DiscardHandler), metrics: prometheus.NewRegistry()}
	if keyed {
		ctx.keyed = &dryKeyed{decl: decl}
	}
	ctx.ops = &dryOperatorStore{decl: decl}
	defer func() {
		if p := recover(); p != nil {
			decl, err = nil, fmt.Errorf("operator panicked in a dry run: %v", p)
		}
	}()
	openErr := op.Open(ctx)
	closeErr := op.Close()
	close(done)
	if openErr != nil {
		return decl, fmt.Errorf("open: %w", openErr)
	}
	if closeErr != nil {
		return decl, fmt.Errorf("close after a dry-run open: %w", closeErr)
	}
	return decl, nil
}

// dryContext is the api.Context of a dry run.
type dryContext struct {
	info    api.TaskInfo
	logger  *slog.Logger
	metrics prometheus.Registerer
	done    chan struct{}
	dataDir string
	decl    *Declarations
	keyed   *dryKeyed
	ops     *dryOperatorStore
}

func (c *dryContext) Info() api.TaskInfo             { return c.info }
func (c *dryContext) Logger() *slog.Logger           { return c.logger }
func (c *dryContext) Metrics() prometheus.Registerer { return c.metrics }
func (c *dryContext) Clock() api.Clock               { return wallClock{} }
func (c *dryContext) Done() <-chan struct{}          { return c.done }
func (c *dryContext) DataDir() string                { return c.dataDir }

// KeyedStateStore returns nil (an untyped nil interface) off keyed streams,
// as the runtime does.
func (c *dryContext) KeyedStateStore() api.KeyedStateStore {
	if c.keyed == nil {
		return nil
	}
	return c.keyed
}

func (c *dryContext) TimerService() api.TimerService {
	if c.keyed == nil {
		return nil
	}
	c.decl.Timers = true
	return c.keyed
}

func (c *dryContext) OperatorStateStore() api.OperatorStateStore { return c.ops }

var (
	_ api.Context              = (*dryContext)(nil)
	_ api.KeyedStateContext    = (*dryContext)(nil)
	_ api.OperatorStateContext = (*dryContext)(nil)
)

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// dryKeyed records keyed declarations; its handles hold nothing. It
// rejects a redeclaration with another kind, codec or TTL presence like
// the real backends.
type dryKeyed struct {
	decl *Declarations
}

func (k *dryKeyed) KeyedState(spec api.StateSpec) (rawstate.State, error) {
	if spec.Name == "" || spec.Name[0] == 0 {
		return nil, fmt.Errorf("declare state %q: name must be non-empty and not start with NUL", spec.Name)
	}
	if spec.Kind < api.StateValue || spec.Kind > api.StateAggregating {
		return nil, fmt.Errorf("declare state %q: unknown kind %v", spec.Name, spec.Kind)
	}
	if err := spec.TTL.Validate(); err != nil {
		return nil, fmt.Errorf("declare state %q: %w", spec.Name, err)
	}
	if old, ok := k.decl.keyed(spec.Name); ok {
		if old.Kind != spec.Kind || old.KeyCodec != spec.KeyCodec || old.ValueCodec != spec.ValueCodec || (old.TTL == nil) != (spec.TTL == nil) {
			return nil, fmt.Errorf("declare state %q as %v: it was declared as %v: %w", spec.Name, spec.Kind, old.Kind, api.ErrStateConflict)
		}
	} else {
		if spec.TTL != nil {
			t := *spec.TTL
			spec.TTL = &t
		}
		k.decl.Keyed = append(k.decl.Keyed, spec)
	}
	switch spec.Kind {
	case api.StateList:
		return dryList{}, nil
	case api.StateMap:
		return dryMap{}, nil
	}
	return dryValue{}, nil
}

func (k *dryKeyed) CurrentKey() []byte   { return nil }
func (k *dryKeyed) CurrentKeyGroup() int { return 0 }

func (k *dryKeyed) RegisterEventTimeTimer(int64, []byte) error      { return nil }
func (k *dryKeyed) DeleteEventTimeTimer(int64, []byte) error        { return nil }
func (k *dryKeyed) RegisterProcessingTimeTimer(int64, []byte) error { return nil }
func (k *dryKeyed) DeleteProcessingTimeTimer(int64, []byte) error   { return nil }
func (k *dryKeyed) CurrentWatermark() int64                         { return math.MinInt64 }
func (k *dryKeyed) CurrentProcessingTime() int64                    { return time.Now().UnixMilli() }

type dryRaw struct{}

func (dryRaw) SetNamespace([]byte) {}
func (dryRaw) Clear() error        { return nil }

type dryValue struct{ dryRaw }

func (dryValue) Get() ([]byte, bool, error) { return nil, false, nil }
func (dryValue) Put([]byte) error           { return nil }

type dryList struct{ dryRaw }

func (dryList) Append([]byte) error           { return nil }
func (dryList) Range(func([]byte) bool) error { return nil }

type dryMap struct{ dryRaw }

func (dryMap) Get([]byte) ([]byte, bool, error)   { return nil, false, nil }
func (dryMap) Put(_, _ []byte) error              { return nil }
func (dryMap) Delete([]byte) error                { return nil }
func (dryMap) Range(func(_, _ []byte) bool) error { return nil }

// dryOperatorStore records operator-state declarations.
type dryOperatorStore struct {
	decl *Declarations
}

func (s *dryOperatorStore) declare(spec api.OperatorStateSpec) error {
	if spec.Name == "" {
		return fmt.Errorf("declare operator state: empty name")
	}
	if old, ok := s.decl.operator(spec.Name); ok {
		if old != spec {
			return fmt.Errorf("declare operator state %q as %v: it was declared as %v: %w", spec.Name, spec.Mode, old.Mode, api.ErrStateConflict)
		}
		return nil
	}
	s.decl.Operator = append(s.decl.Operator, spec)
	return nil
}

func (s *dryOperatorStore) OperatorList(spec api.OperatorStateSpec) (rawstate.OperatorList, error) {
	if spec.Mode != api.SplitList && spec.Mode != api.UnionList {
		return nil, fmt.Errorf("operator list state %q: mode %v is not a list mode", spec.Name, spec.Mode)
	}
	if err := s.declare(spec); err != nil {
		return nil, err
	}
	return dryOpList{}, nil
}

func (s *dryOperatorStore) BroadcastMap(spec api.OperatorStateSpec) (rawstate.BroadcastMap, error) {
	if spec.Mode != api.Broadcast {
		return nil, fmt.Errorf("broadcast state %q: mode %v is not broadcast", spec.Name, spec.Mode)
	}
	if err := s.declare(spec); err != nil {
		return nil, err
	}
	return dryBroadcast{}, nil
}

type dryOpList struct{}

func (dryOpList) Get() [][]byte   { return nil }
func (dryOpList) Update([][]byte) {}
func (dryOpList) Append([]byte)   {}

type dryBroadcast struct{}

func (dryBroadcast) Get([]byte) ([]byte, bool)    { return nil, false }
func (dryBroadcast) Put(_, _ []byte)              {}
func (dryBroadcast) Delete([]byte)                {}
func (dryBroadcast) Range(func(_, _ []byte) bool) {}
func (dryBroadcast) Clear()                       {}
