// Package sinktest is the conformance suite every exactly-once sink runs
// (the file sink, the Kafka sink): a sink that claims exactly once must
// give a committed reader the output of a run without failures, whatever
// crash and restore happen in between, at any parallelism.
//
// The suite drives sink subtasks through the lifecycle the runtime drives
// (Open, InitializeState, Write, SnapshotState, NotifyCheckpointComplete,
// Finish, Close; a crash is Close without Finish) with real operator
// state stores, restored and redistributed as the runtime does
// (statebackend.Redistribute). After a restore from checkpoint c the suite
// writes again every record written after c, as a replaying source does.
package sinktest

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

// Env is one sink under test and the system it writes to. Each scenario
// gets a fresh Env.
type Env interface {
	// NewSink returns a new, unopened sink instance (one per subtask and
	// attempt), configured for exactly once.
	NewSink(t *testing.T) api.Sink
	// Committed returns what a reader of committed output sees: every
	// record value written, in any order.
	Committed(t *testing.T) []string
}

// JobID is the job id every attempt of a scenario runs as.
const JobID = "5eed5eed5eed5eed5eed5eed5eed5eed"

// Run runs every scenario with a fresh Env from newEnv.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			env := newEnv(t)
			want := sc.run(&driver{t: t, env: env})
			got := env.Committed(t)
			slices.Sort(got)
			slices.Sort(want)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("committed output differs from the no-failure output:\ngot  %d records %.300v\nwant %d records %.300v", len(got), got, len(want), want)
			}
		})
	}
}

type driver struct {
	t       *testing.T
	env     Env
	attempt int
}

// attempt is one attempt of the job's sink at some parallelism.
type attempt struct {
	d      *driver
	sinks  []api.Sink
	stores []*statebackend.OperatorStore
}

type ctx struct {
	info  api.TaskInfo
	store *statebackend.OperatorStore
	dir   string
}

func (c ctx) Info() api.TaskInfo                         { return c.info }
func (c ctx) Logger() *slog.Logger                       { return slog.New(slog.DiscardHandler) }
func (c ctx) Metrics() prometheus.Registerer             { return prometheus.NewRegistry() }
func (c ctx) Clock() api.Clock                           { return wall{} }
func (c ctx) Done() <-chan struct{}                      { return nil }
func (c ctx) DataDir() string                            { return c.dir }
func (c ctx) OperatorStateStore() api.OperatorStateStore { return c.store }

type wall struct{}

func (wall) Now() time.Time { return time.Now() }

// start opens an attempt at par, restored from checkpoint (nil: fresh).
func (d *driver) start(par int, checkpoint [][]statebackend.OperatorState) *attempt {
	d.t.Helper()
	d.attempt++
	var shares [][]statebackend.OperatorState
	if checkpoint != nil {
		var err error
		if shares, err = statebackend.Redistribute(checkpoint, par); err != nil {
			d.t.Fatal(err)
		}
	}
	a := &attempt{d: d}
	for i := 0; i < par; i++ {
		store := statebackend.NewOperatorStore()
		if shares != nil {
			if err := store.Restore(shares[i]); err != nil {
				d.t.Fatal(err)
			}
		}
		s := d.env.NewSink(d.t)
		info := api.TaskInfo{JobID: JobID, JobName: "conformance", OperatorID: "sink", OperatorUID: "sink",
			SubtaskIndex: i, Parallelism: par, MaxParallelism: 128, Attempt: d.attempt}
		if err := s.Open(ctx{info: info, store: store, dir: d.t.TempDir()}); err != nil {
			d.t.Fatalf("attempt %d subtask %d: open: %v", d.attempt, i, err)
		}
		if f, ok := s.(api.CheckpointedFunction); ok {
			if err := f.InitializeState(checkpoint != nil); err != nil {
				d.t.Fatalf("attempt %d subtask %d: initialize state: %v", d.attempt, i, err)
			}
		}
		a.sinks, a.stores = append(a.sinks, s), append(a.stores, store)
	}
	d.t.Cleanup(a.crash)
	return a
}

// write writes batch name: n records spread over the subtasks, and
// returns their values.
func (a *attempt) write(name string, n int) []string {
	a.d.t.Helper()
	var vals []string
	for i := 0; i < n; i++ {
		v := fmt.Sprintf(`{"batch":%q,"n":%d}`, name, i)
		if err := a.sinks[i%len(a.sinks)].Write(api.Record{Value: []byte(v), Timestamp: api.NoTimestamp}); err != nil {
			a.d.t.Fatalf("write %s: %v", v, err)
		}
		vals = append(vals, v)
	}
	return vals
}

// snapshot takes checkpoint id and returns what it stores.
func (a *attempt) snapshot(id int64) [][]statebackend.OperatorState {
	a.d.t.Helper()
	var out [][]statebackend.OperatorState
	for i, s := range a.sinks {
		if f, ok := s.(api.CheckpointedFunction); ok {
			if err := f.SnapshotState(id); err != nil {
				a.d.t.Fatalf("subtask %d: snapshot %d: %v", i, id, err)
			}
		}
		out = append(out, a.stores[i].Snapshot())
	}
	return out
}

func (a *attempt) complete(id int64) {
	a.d.t.Helper()
	for i, s := range a.sinks {
		if l, ok := s.(api.CheckpointListener); ok {
			if err := l.NotifyCheckpointComplete(id); err != nil {
				a.d.t.Fatalf("subtask %d: notify %d: %v", i, id, err)
			}
		}
	}
}

func (a *attempt) finish() {
	a.d.t.Helper()
	for i, s := range a.sinks {
		if err := s.Finish(); err != nil {
			a.d.t.Fatalf("subtask %d: finish: %v", i, err)
		}
	}
	a.crash()
}

// crash ends the attempt without Finish.
func (a *attempt) crash() {
	for _, s := range a.sinks {
		s.Close()
	}
	a.sinks = nil
}

type scenario struct {
	name string
	// run plays the scenario and returns the no-failure output.
	run func(d *driver) []string
}

func cat(parts ...[]string) []string { return slices.Concat(parts...) }

var scenarios = []scenario{
	{"no-failure", func(d *driver) []string {
		a := d.start(2, nil)
		x := a.write("a", 20)
		a.snapshot(1)
		a.complete(1)
		y := a.write("b", 20)
		a.snapshot(2)
		a.complete(2)
		z := a.write("c", 9)
		a.finish()
		return cat(x, y, z)
	}},
	{"crash-before-pre-commit", func(d *driver) []string {
		a := d.start(2, nil)
		x := a.write("a", 20)
		cp1 := a.snapshot(1)
		a.complete(1)
		a.write("b", 20) // lost with the crash, written again after the restore
		a.crash()
		b := d.start(3, cp1)
		y := b.write("b", 20)
		b.snapshot(2)
		b.complete(2)
		z := b.write("c", 7)
		b.finish()
		return cat(x, y, z)
	}},
	{"crash-between-pre-commit-and-commit", func(d *driver) []string {
		a := d.start(3, nil)
		x := a.write("a", 20)
		a.snapshot(1)
		y := a.write("b", 20)
		cp2 := a.snapshot(2) // checkpoint 2 completed, but no notification arrived
		a.write("c", 10)
		a.crash()
		b := d.start(1, cp2)
		z := b.write("c", 10)
		b.snapshot(3)
		b.complete(3)
		b.finish()
		return cat(x, y, z)
	}},
	{"crash-after-commit", func(d *driver) []string {
		a := d.start(2, nil)
		x := a.write("a", 20)
		cp1 := a.snapshot(1)
		a.complete(1)
		a.crash()
		b := d.start(2, cp1) // restoring committed transactions commits nothing twice
		y := b.write("b", 11)
		b.snapshot(2)
		b.complete(2)
		b.finish()
		return cat(x, y)
	}},
	{"restore-twice", func(d *driver) []string {
		a := d.start(2, nil)
		x := a.write("a", 20)
		cp1 := a.snapshot(1)
		a.write("b", 5)
		a.crash()
		b := d.start(3, cp1)
		b.write("b", 5)
		b.crash() // the first restore fails too
		c := d.start(1, cp1)
		y := c.write("b", 5)
		c.finish()
		return cat(x, y)
	}},
}
