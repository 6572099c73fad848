package file

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/statebackend"
)

// jobCtx is the Context of one sink subtask of a job attempt, with its
// operator state store.
type jobCtx struct {
	info  api.TaskInfo
	store *statebackend.OperatorStore
}

func (c jobCtx) Info() api.TaskInfo                         { return c.info }
func (c jobCtx) Logger() *slog.Logger                       { return slog.New(slog.DiscardHandler) }
func (c jobCtx) Metrics() prometheus.Registerer             { return prometheus.NewRegistry() }
func (c jobCtx) Clock() api.Clock                           { return nil }
func (c jobCtx) Done() <-chan struct{}                      { return nil }
func (c jobCtx) DataDir() string                            { return "" }
func (c jobCtx) OperatorStateStore() api.OperatorStateStore { return c.store }

// attempt is one attempt of a job's file sink: par subtasks driven through
// the lifecycle the runtime drives (Open after the operator state was
// restored, InitializeState, records, SnapshotState, notifications,
// Finish, Close), with real files in dir.
type attempt struct {
	t      *testing.T
	sinks  []api.Sink
	stores []*statebackend.OperatorStore
}

type attemptOpts struct {
	job, op string
	par     int
	maxSize int64
	// restore is the checkpoint to start from: each old subtask's operator
	// state, redistributed as the runtime does (nil: a fresh start).
	restore [][]statebackend.OperatorState
}

func startAttempt(t *testing.T, dir string, o attemptOpts) *attempt {
	t.Helper()
	if o.op == "" {
		o.op = "sink"
	}
	typ := SinkType()
	cfg, err := typ.DecodeConfig(map[string]any{"path": dir, "max_file_size": o.maxSize})
	if err != nil {
		t.Fatal(err)
	}
	var shares [][]statebackend.OperatorState
	if o.restore != nil {
		if shares, err = statebackend.Redistribute(o.restore, o.par); err != nil {
			t.Fatal(err)
		}
	}
	a := &attempt{t: t}
	for i := 0; i < o.par; i++ {
		store := statebackend.NewOperatorStore()
		if shares != nil {
			if err := store.Restore(shares[i]); err != nil {
				t.Fatal(err)
			}
		}
		s, err := typ.NewSink(cfg)
		if err != nil {
			t.Fatal(err)
		}
		info := api.TaskInfo{JobID: o.job, OperatorID: o.op, OperatorUID: o.op, SubtaskIndex: i, Parallelism: o.par}
		if err := s.Open(jobCtx{info, store}); err != nil {
			t.Fatal(err)
		}
		if err := s.(api.CheckpointedFunction).InitializeState(o.restore != nil); err != nil {
			t.Fatalf("subtask %d: initialize state: %v", i, err)
		}
		a.sinks, a.stores = append(a.sinks, s), append(a.stores, store)
	}
	return a
}

func (a *attempt) write(sub int, vals ...string) {
	a.t.Helper()
	for _, v := range vals {
		if err := a.sinks[sub].Write(api.Record{Value: []byte(v)}); err != nil {
			a.t.Fatal(err)
		}
	}
}

// snapshot takes checkpoint id on every subtask and returns what the
// checkpoint stores: each subtask's operator state.
func (a *attempt) snapshot(id int64) [][]statebackend.OperatorState {
	a.t.Helper()
	var out [][]statebackend.OperatorState
	for i, s := range a.sinks {
		if err := s.(api.CheckpointedFunction).SnapshotState(id); err != nil {
			a.t.Fatalf("subtask %d: snapshot %d: %v", i, id, err)
		}
		out = append(out, a.stores[i].Snapshot())
	}
	return out
}

func (a *attempt) notify(id int64) {
	a.t.Helper()
	for i, s := range a.sinks {
		if err := s.(api.CheckpointListener).NotifyCheckpointComplete(id); err != nil {
			a.t.Fatalf("subtask %d: notify %d: %v", i, id, err)
		}
	}
}

func (a *attempt) finish() {
	a.t.Helper()
	for i, s := range a.sinks {
		if err := s.Finish(); err != nil {
			a.t.Fatalf("subtask %d: finish: %v", i, err)
		}
	}
}

// close ends the attempt; without finish it is a failure (or a cancel).
func (a *attempt) close() {
	for _, s := range a.sinks {
		s.Close()
	}
}

// listing returns every file of dir with its content.
func listing(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// committed returns the committed (visible) files of a listing.
func committed(files map[string]string) map[string]string {
	out := map[string]string{}
	for n, c := range files {
		if !strings.HasPrefix(n, ".") {
			out[n] = c
		}
	}
	return out
}

// occurrences counts every line across the committed files of dir.
func occurrences(t *testing.T, dir string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, c := range committed(listing(t, dir)) {
		for _, l := range strings.Fields(c) {
			n[l]++
		}
	}
	return n
}

// keepsCommitted fails unless every committed file of before is still
// there with the same content.
func keepsCommitted(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	now := listing(t, dir)
	for n, c := range committed(before) {
		if got, ok := now[n]; !ok {
			t.Errorf("committed file %s was removed", n)
		} else if got != c {
			t.Errorf("committed file %s changed: %q, was %q", n, got, c)
		}
	}
}

func recs(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%q", fmt.Sprint(prefix, i)))
	}
	return out
}

// exactlyOnce fails unless each of want occurs exactly once in the
// committed output and nothing else does.
func exactlyOnce(t *testing.T, dir string, want ...[]string) {
	t.Helper()
	got := occurrences(t, dir)
	all := map[string]bool{}
	for _, w := range want {
		for _, r := range w {
			all[r] = true
			if got[r] != 1 {
				t.Errorf("record %s occurs %d times in the committed output, want once", r, got[r])
			}
		}
	}
	for _, r := range slices.Sorted(maps.Keys(got)) {
		if !all[r] {
			t.Errorf("record %s (%d times) should not be in the committed output", r, got[r])
		}
	}
}

const (
	jobA = "aaaaaaaa000000000000000000000001"
	jobB = "bbbbbbbb000000000000000000000002"
	jobC = "cccccccc000000000000000000000003"
)

// TestSinkRestoreLeavesOtherRunsAlone: the output directory holds the
// committed files of a run started after the checkpoint was taken (and a
// file of an older Flow). A restore from the checkpoint that fails before
// the restored job completes a checkpoint touches nothing; a restore that
// succeeds commits the checkpoint's pending part and leaves every other
// run's committed file as it was.
func TestSinkRestoreLeavesOtherRunsAlone(t *testing.T) {
	dir := t.TempDir()
	a := startAttempt(t, dir, attemptOpts{job: jobA, par: 1})
	a.write(0, recs("a", 0, 2)...)
	ckA := a.snapshot(1) // the notification is lost
	a.write(0, recs("a", 2, 3)...)
	a.close() // A fails

	c := startAttempt(t, dir, attemptOpts{job: jobC, par: 1, maxSize: 20})
	c.write(0, recs("c", 0, 8)...)
	c.finish()
	c.close()
	write(t, filepath.Join(dir, "part-0-7.jsonl"), "\"old\"\n")
	before := listing(t, dir)
	if len(committed(before)) < 3 {
		t.Fatalf("run C should have rolled into several files: %v", slices.Sorted(maps.Keys(before)))
	}

	// A new job restores A's checkpoint; it fails before its first
	// checkpoint completes (another task could not restore).
	b := startAttempt(t, dir, attemptOpts{job: jobB, par: 1, restore: ckA})
	b.write(0, recs("a", 2, 3)...)
	b.close()
	if after := listing(t, dir); !maps.Equal(committed(after), committed(before)) {
		t.Fatalf("a restore that failed changed the committed output:\nbefore %v\nafter  %v",
			slices.Sorted(maps.Keys(committed(before))), slices.Sorted(maps.Keys(committed(after))))
	}
	keepsCommitted(t, dir, before)

	// The job restarts from the same checkpoint and succeeds.
	b = startAttempt(t, dir, attemptOpts{job: jobB, par: 1, restore: ckA})
	b.write(0, recs("a", 2, 3)...)
	b.snapshot(2)
	b.notify(2)
	b.write(0, recs("a", 3, 5)...)
	b.finish()
	b.close()
	keepsCommitted(t, dir, before)
	exactlyOnce(t, dir, recs("a", 0, 5), recs("c", 0, 8), []string{`"old"`})
}

// TestSinkRescaleRestore: a parallelism-3 run commits checkpoint 1,
// pre-commits checkpoint 2 and goes on; a new job restores checkpoint 2 at
// parallelism 2 into the same directory, and gets only the notification of
// a later checkpoint. No committed file is ever removed, and each run's
// output is exactly once:
//   - the first run failed after checkpoint 2: every record is committed
//     exactly once;
//   - the first run went on to commit checkpoint 3 and finished: its
//     output stays, so the records after checkpoint 2 are there twice
//     (once per run, as restoring an older checkpoint into the directory
//     asks for) and the records before it once.
func TestSinkRescaleRestore(t *testing.T) {
	// Record i goes to subtask i mod parallelism, as a rebalance would.
	feed := func(a *attempt, par, from, to int) {
		for i := from; i < to; i++ {
			a.write(i%par, fmt.Sprintf("%q", fmt.Sprint("r", i)))
		}
	}
	for _, finished := range []bool{false, true} {
		t.Run(map[bool]string{false: "after-a-failure", true: "after-the-run-finished"}[finished], func(t *testing.T) {
			dir := t.TempDir()
			a := startAttempt(t, dir, attemptOpts{job: jobA, par: 3, maxSize: 30})
			feed(a, 3, 0, 30)
			a.snapshot(1)
			a.notify(1)
			feed(a, 3, 30, 60)
			ck2 := a.snapshot(2) // its notification is lost
			feed(a, 3, 60, 75)
			if finished {
				a.snapshot(3)
				a.notify(3) // commits checkpoints 2 and 3
				feed(a, 3, 75, 90)
				a.finish()
			}
			a.close()
			before := listing(t, dir)
			if len(committed(before)) == 0 {
				t.Fatal("the first run committed nothing")
			}

			b := startAttempt(t, dir, attemptOpts{job: jobB, par: 2, maxSize: 30, restore: ck2})
			feed(b, 2, 60, 80)
			b.snapshot(4)
			feed(b, 2, 80, 85)
			b.snapshot(5)
			b.notify(5) // only the later notification arrives
			b.notify(4) // late
			feed(b, 2, 85, 90)
			b.finish()
			b.close()
			keepsCommitted(t, dir, before)
			if !finished {
				exactlyOnce(t, dir, recs("r", 0, 90))
				return
			}
			occ := occurrences(t, dir)
			for i := 0; i < 90; i++ {
				r, want := fmt.Sprintf("%q", fmt.Sprint("r", i)), 1
				if i >= 60 {
					want = 2
				}
				if occ[r] != want {
					t.Errorf("record %s occurs %d times, want %d", r, occ[r], want)
				}
			}
			if len(occ) != 90 {
				t.Errorf("%d distinct records, want 90", len(occ))
			}
		})
	}
}

// TestSinkFailoverCleansOnlyItsOwnParts: a job fails after checkpoint 2
// was pre-committed and restarts from it. Until a checkpoint of the new
// attempt completes nothing is touched; then the restored pending parts
// are committed and the parts the failed attempt wrote after the
// checkpoint are deleted, while the parts of another sink of the same job
// writing into the same directory, and of another job, stay.
func TestSinkFailoverCleansOnlyItsOwnParts(t *testing.T) {
	dir := t.TempDir()
	a := startAttempt(t, dir, attemptOpts{job: jobA, par: 2, maxSize: 30})
	audit := startAttempt(t, dir, attemptOpts{job: jobA, op: "audit", par: 2})
	c := startAttempt(t, dir, attemptOpts{job: jobC, par: 2})
	for _, x := range []struct {
		a *attempt
		p string
	}{{a, "s"}, {audit, "u"}, {c, "c"}} {
		x.a.write(0, recs(x.p+"0-", 0, 6)...)
		x.a.write(1, recs(x.p+"1-", 0, 6)...)
	}
	ck := a.snapshot(2)
	ckAudit := audit.snapshot(2)
	c.snapshot(2)
	a.write(0, recs("late", 0, 9)...) // rolls: pending and in-progress parts after the checkpoint
	audit.write(1, `"o"`)
	a.close()
	audit.close()
	c.close()
	before := listing(t, dir)
	// hidden returns the uncommitted files of a job's sink operator.
	hidden := func(job, op string) []string {
		var out []string
		for n := range listing(t, dir) {
			if strings.HasPrefix(n, ".part-"+tag(job)+"-"+tag("operator:"+op)+"-") {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}
	sinkHidden, auditHidden, cHidden := hidden(jobA, "sink"), hidden(jobA, "audit"), hidden(jobC, "sink")
	if len(sinkHidden) < 4 || len(auditHidden) != 3 || len(cHidden) != 2 {
		t.Fatalf("setup: hidden files of the sink %v, the audit sink %v, job C %v", sinkHidden, auditHidden, cHidden)
	}

	b := startAttempt(t, dir, attemptOpts{job: jobA, par: 2, maxSize: 30, restore: ck})
	bAudit := startAttempt(t, dir, attemptOpts{job: jobA, op: "audit", par: 2, restore: ckAudit})
	b.write(1, `"new"`)
	after := listing(t, dir)
	for n, c := range before {
		if got, ok := after[n]; !ok || got != c {
			t.Fatalf("the restore changed %s before a checkpoint completed", n)
		}
	}
	b.snapshot(3)
	b.notify(3)
	// The restored pending parts are committed, the parts the failed
	// attempt wrote after the checkpoint are gone.
	if h := hidden(jobA, "sink"); len(h) != 0 {
		t.Errorf("uncommitted parts of the sink left after its checkpoint completed: %v", h)
	}
	exactlyOnce(t, dir, recs("s0-", 0, 6), recs("s1-", 0, 6), []string{`"new"`})
	if h, c := hidden(jobA, "audit"), hidden(jobC, "sink"); !slices.Equal(h, auditHidden) || !slices.Equal(c, cHidden) {
		t.Errorf("the sink touched parts of the audit sink (%v, was %v) or of job C (%v, was %v)", h, auditHidden, c, cHidden)
	}

	bAudit.snapshot(3)
	bAudit.notify(3)
	if h, c := hidden(jobA, "audit"), hidden(jobC, "sink"); len(h) != 0 || !slices.Equal(c, cHidden) {
		t.Errorf("after the audit sink's checkpoint: its hidden files %v (want none), job C's %v (want %v)", h, c, cHidden)
	}
	b.finish()
	bAudit.finish()
	b.close()
	bAudit.close()
	exactlyOnce(t, dir, recs("s0-", 0, 6), recs("s1-", 0, 6), recs("u0-", 0, 6), recs("u1-", 0, 6), []string{`"new"`})
	keepsCommitted(t, dir, before)
}

// TestSinkRestoreReportsMissingPendingPart: a pending part of the restored
// checkpoint that is neither pending nor committed fails the restore.
func TestSinkRestoreReportsMissingPendingPart(t *testing.T) {
	dir := t.TempDir()
	a := startAttempt(t, dir, attemptOpts{job: jobA, par: 1})
	a.write(0, `"a"`)
	ck := a.snapshot(1)
	a.close()
	for n := range listing(t, dir) {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	typ := SinkType()
	cfg, err := typ.DecodeConfig(map[string]any{"path": dir})
	if err != nil {
		t.Fatal(err)
	}
	shares, err := statebackend.Redistribute(ck, 1)
	if err != nil {
		t.Fatal(err)
	}
	store := statebackend.NewOperatorStore()
	if err := store.Restore(shares[0]); err != nil {
		t.Fatal(err)
	}
	s, _ := typ.NewSink(cfg)
	if err := s.Open(jobCtx{api.TaskInfo{JobID: jobB, OperatorUID: "sink", Parallelism: 1}, store}); err != nil {
		t.Fatal(err)
	}
	err = s.(api.CheckpointedFunction).InitializeState(true)
	if !errors.Is(err, ErrPartMissing) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("restore with a vanished pending part: %v, want one line wrapping ErrPartMissing naming the directory", err)
	}
	s.Close()
}

// TestPathMustBeAbsolute: a relative path would resolve against each
// TaskManager's working directory; the config is refused with one line
// naming the field and the fix.
func TestPathMustBeAbsolute(t *testing.T) {
	for _, typ := range []api.OperatorType{SinkType(), SourceType()} {
		for _, p := range []string{"out", "./out", "data/out"} {
			_, err := typ.DecodeConfig(map[string]any{"path": p})
			fe := api.FieldErrors(err)
			if !errors.Is(err, api.ErrFieldValue) || len(fe) != 1 || fe[0].Field != "path" ||
				!strings.Contains(err.Error(), fmt.Sprintf("%q is relative", p)) || !strings.Contains(err.Error(), "absolute") ||
				strings.Contains(err.Error(), "\n") {
				t.Errorf("%s %v path %q: %v, want one ErrFieldValue line for field path saying it is relative", typ.Name, typ.Kind, p, err)
			}
		}
		for _, p := range []string{"/data/out", "file:///data/out"} {
			if _, err := typ.DecodeConfig(map[string]any{"path": p}); err != nil {
				t.Errorf("%s %v path %q: %v", typ.Name, typ.Kind, p, err)
			}
		}
		if _, err := typ.DecodeConfig(map[string]any{"path": "file://data/out"}); !errors.Is(err, api.ErrFieldValue) {
			t.Errorf("%s %v path file://data/out (host data, a relative path): %v, want ErrFieldValue", typ.Name, typ.Kind, err)
		}
	}
}

// TestSinkRestoreCommitsWhereThePartsWere: a job restored with another
// output path commits the restored pending parts where they were written,
// at the end of input when no checkpoint completed before it.
func TestSinkRestoreCommitsWhereThePartsWere(t *testing.T) {
	old, dir := t.TempDir(), t.TempDir()
	a := startAttempt(t, old, attemptOpts{job: jobA, par: 1})
	a.write(0, `"a"`)
	ck := a.snapshot(1)
	a.close()
	b := startAttempt(t, dir, attemptOpts{job: jobB, par: 1, restore: ck})
	b.write(0, `"b"`)
	b.finish()
	b.close()
	exactlyOnce(t, old, []string{`"a"`})
	exactlyOnce(t, dir, []string{`"b"`})
	for n := range listing(t, old) {
		if p, ok := ParsePartName(n); !ok || !p.Committed || p.Job != "aaaaaaaa" || p.Operator != tag("operator:sink") || p.Subtask != 0 {
			t.Errorf("%s parsed as %+v, %v", n, p, ok)
		}
	}
}
