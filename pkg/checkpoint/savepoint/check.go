package savepoint

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/keygroup"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// ErrIncompatible is wrapped by Check's error when the job cannot start
// from the snapshot (the report has an error finding).
var ErrIncompatible = errors.New("the job cannot start from the snapshot")

// Severity of a finding.
type Severity string

const (
	// SeverityError: starting the job from the snapshot would fail or
	// lose state.
	SeverityError Severity = "error"
	// SeverityWarning: the job can start, but look at it (state dropped
	// with AllowNonRestoredState, a changed operator type, a JSON codec
	// version the job must read).
	SeverityWarning Severity = "warning"
	// SeverityInfo: what will happen (matched, new, rescaled).
	SeverityInfo Severity = "info"
)

// Finding codes.
const (
	CodeOperatorMatched        = "operator-matched"
	CodeOperatorNew            = "operator-new"
	CodeOperatorRemoved        = "operator-removed"
	CodeOperatorEmpty          = "operator-without-state"
	CodeTypeChanged            = "type-changed"
	CodeOpenFailed             = "open-failed"
	CodeNotVerified            = "not-verified"
	CodeStateMatched           = "state-matched"
	CodeStateDropped           = "state-dropped"
	CodeStateNew               = "state-new"
	CodeKindChanged            = "kind-changed"
	CodeCodecChanged           = "codec-changed"
	CodeCodecVersion           = "codec-version"
	CodeTTLChanged             = "ttl-changed"
	CodeMaxParallelismChanged  = "max-parallelism-changed"
	CodeParallelismAboveMax    = "parallelism-above-max"
	CodeRescale                = "rescale"
	CodeKeyedStateWithoutKeyBy = "keyed-state-without-keyby"
)

// Finding is one result of a check.
type Finding struct {
	Severity Severity `json:"severity"`
	Code     string   `json:"code"`
	// UID is the operator the finding is about; State the state, if any.
	UID     string `json:"uid,omitempty"`
	State   string `json:"state,omitempty"`
	Message string `json:"message"`
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s", f.Severity, f.Message)
}

// CheckOptions configure Check.
type CheckOptions struct {
	// AllowNonRestoredState turns state that no operator of the job
	// claims (removed operators, removed or renamed states) from errors
	// into warnings, as `run --allow-non-restored-state` drops it.
	AllowNonRestoredState bool
	// ReadData reads every keyed-state file in full (checksums, entry
	// counts and the highest JSON codec version stored); otherwise only
	// the file headers are read, which is fast on large snapshots.
	ReadData bool
}

// CheckReport is the result of Check.
type CheckReport struct {
	// Snapshot is the snapshot directory's URL, Job the job's name.
	Snapshot string `json:"snapshot"`
	Job      string `json:"job"`
	// Compatible is true when no finding is an error.
	Compatible bool      `json:"compatible"`
	Errors     int       `json:"errors"`
	Warnings   int       `json:"warnings"`
	Findings   []Finding `json:"findings"`
	// Inspect is what the snapshot holds (counts only with ReadData).
	Inspect *Report `json:"inspect"`
	// Sources are the restore checks of the operators whose types read
	// their own state (api.OperatorType.CheckRestore: a Kafka source's
	// topics, partitions and offsets).
	Sources []SourceReport `json:"sources"`
}

// Has reports whether a finding with code exists for uid and state
// (empty matches any).
func (r *CheckReport) Has(code, uid, state string) bool {
	return r.Find(code, uid, state) != nil
}

// Find returns the first finding with code for uid and state (empty
// matches any), or nil.
func (r *CheckReport) Find(code, uid, state string) *Finding {
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.Code == code && (uid == "" || f.UID == uid) && (state == "" || f.State == state) {
			return f
		}
	}
	return nil
}

type checker struct {
	rep  *CheckReport
	opts CheckOptions
}

func (c *checker) add(sev Severity, code, uid, state, format string, args ...any) {
	c.rep.Findings = append(c.rep.Findings, Finding{Severity: sev, Code: code, UID: uid, State: state, Message: fmt.Sprintf(format, args...)})
}

// dropped is the severity of state that would be dropped.
func (c *checker) dropped() Severity {
	if c.opts.AllowNonRestoredState {
		return SeverityWarning
	}
	return SeverityError
}

// VertexUID is the uid that matches a vertex to snapshot state: its uid,
// defaulting to its id.
func VertexUID(v *jobgraphv1.Vertex) string {
	if v.GetUid() != "" {
		return v.GetUid()
	}
	return v.GetId()
}

// Check tells whether graph can start from the snapshot at snapshotURL
// (see the package documentation for what is compared). Operator types are
// looked up in reg. It returns the report and, when the report has an
// error finding, an error wrapping ErrIncompatible; other errors (the
// snapshot cannot be read, an operator type is unknown) come with a nil
// report.
func Check(ctx context.Context, graph *jobgraphv1.JobGraph, reg *api.Registry, snapshotURL string, opts CheckOptions) (*CheckReport, error) {
	if graph == nil || reg == nil {
		return nil, errors.New("check savepoint: nil job graph or registry")
	}
	sn, err := storage.OpenSnapshot(ctx, URL(snapshotURL))
	if err != nil {
		return nil, fmt.Errorf("check savepoint: %w", err)
	}
	defer sn.Close()
	snap, err := inspectSnapshot(ctx, sn, opts.ReadData)
	if err != nil {
		return nil, fmt.Errorf("check savepoint: %w", err)
	}
	sources, err := CheckSources(ctx, graph, reg, sn.Metadata, sn.Files)
	if err != nil {
		return nil, fmt.Errorf("check savepoint %s: %w", snap.Path, err)
	}
	c := &checker{rep: &CheckReport{Snapshot: snap.Path, Job: graph.GetName(), Findings: []Finding{}, Inspect: snap, Sources: sources}, opts: opts}
	jobMaxPar := int(graph.GetMaxParallelism())
	if jobMaxPar <= 0 {
		jobMaxPar = keygroup.DefaultMaxParallelism
	}
	byUID := map[string]*OperatorReport{}
	for i := range snap.Operators {
		byUID[snap.Operators[i].UID] = &snap.Operators[i]
	}
	vertexUIDs := map[string]bool{}
	for _, v := range graph.GetVertices() {
		uid := VertexUID(v)
		vertexUIDs[uid] = true
		par := jobgraph.VertexParallelism(graph, v)
		old := byUID[uid]
		typ, err := reg.LookupKind(v.GetType(), vertexKind(v.GetKind()))
		if err != nil {
			return nil, fmt.Errorf("check savepoint: operator %q: %w", v.GetId(), err)
		}
		if old == nil {
			c.add(SeverityInfo, CodeOperatorNew, uid, "", "operator %s (%s) is new: it starts with empty state", uid, v.GetType())
			continue
		}
		c.add(SeverityInfo, CodeOperatorMatched, uid, "", "operator %s (%s) matches the snapshot's operator %s (%s)", uid, v.GetType(), old.OperatorID, old.Type)
		if old.Type != "" && old.Type != v.GetType() {
			c.add(SeverityWarning, CodeTypeChanged, uid, "", "operator %s was of type %s and is now %s: its state is restored by uid into the new type", uid, old.Type, v.GetType())
		}
		c.parallelism(uid, old, par, jobMaxPar)
		if typ.Kind != api.KindOperator {
			if old.HasState() {
				c.add(SeverityInfo, CodeNotVerified, uid, "", "%s %s: its state (%s) is restored by uid; its declarations are not checked (a dry run does not open sources and sinks: they reach external systems)",
					typ.Kind, uid, describeState(old))
			}
			continue
		}
		cfg, err := typ.DecodeConfigJSON(v.GetConfig())
		if err != nil {
			return nil, fmt.Errorf("check savepoint: operator %q: config: %w", v.GetId(), err)
		}
		op, err := typ.NewOperator(cfg)
		if err != nil {
			c.add(SeverityError, CodeOpenFailed, uid, "", "operator %s cannot be built from its config: %v", uid, err)
			continue
		}
		info := api.TaskInfo{JobName: graph.GetName(), OperatorID: v.GetId(), OperatorUID: uid,
			SubtaskIndex: 0, Parallelism: par, MaxParallelism: jobMaxPar}
		decl, err := DryRun(op, info, v.GetKeyBy() != "")
		if err != nil {
			c.add(SeverityError, CodeOpenFailed, uid, "", "operator %s fails in a dry-run Open, so its states are unknown: %v", uid, err)
			continue
		}
		c.states(uid, old, decl)
	}
	c.sources(sources)
	for i := range snap.Operators {
		old := &snap.Operators[i]
		if vertexUIDs[old.UID] {
			continue
		}
		if !old.HasState() {
			c.add(SeverityInfo, CodeOperatorEmpty, old.UID, "", "the snapshot's operator %s (%s) is not in the job; it holds no state", old.UID, old.Type)
			continue
		}
		fix := "give an operator of the job the uid " + old.UID + ", or pass --allow-non-restored-state to drop it"
		if c.opts.AllowNonRestoredState {
			fix = "it will be dropped (--allow-non-restored-state)"
		}
		c.add(c.dropped(), CodeOperatorRemoved, old.UID, "", "the snapshot holds state of operator %s (%s: %s) that the job does not have: %s",
			old.UID, old.Type, describeState(old), fix)
	}
	for _, f := range c.rep.Findings {
		switch f.Severity {
		case SeverityError:
			c.rep.Errors++
		case SeverityWarning:
			c.rep.Warnings++
		}
	}
	c.rep.Compatible = c.rep.Errors == 0
	if !c.rep.Compatible {
		return c.rep, fmt.Errorf("job %q and snapshot %s: %d error(s), first: %s: %w", graph.GetName(), snap.Path, c.rep.Errors, firstError(c.rep), ErrIncompatible)
	}
	return c.rep, nil
}

func firstError(r *CheckReport) string {
	for _, f := range r.Findings {
		if f.Severity == SeverityError {
			return f.Message
		}
	}
	return ""
}

func vertexKind(k jobgraphv1.VertexKind) api.Kind {
	switch k {
	case jobgraphv1.VertexKind_VERTEX_KIND_SOURCE:
		return api.KindSource
	case jobgraphv1.VertexKind_VERTEX_KIND_SINK:
		return api.KindSink
	}
	return api.KindOperator
}

// describeState summarizes an operator's state for messages.
func describeState(o *OperatorReport) string {
	var parts []string
	var names []string
	for _, s := range o.States {
		names = append(names, fmt.Sprintf("%s %q", s.Kind, s.Name))
	}
	if len(names) > 0 {
		parts = append(parts, "states "+strings.Join(names, ", "))
	}
	if o.SourcePositions > 0 {
		parts = append(parts, fmt.Sprintf("source positions of %d subtask(s)", o.SourcePositions))
	}
	if o.InFlightChannels > 0 {
		parts = append(parts, fmt.Sprintf("in-flight data of %d channel(s)", o.InFlightChannels))
	}
	if len(parts) == 0 && len(o.KeyGroups) > 0 {
		parts = append(parts, "keyed state")
	}
	if len(parts) == 0 {
		return "no state"
	}
	return strings.Join(parts, "; ")
}

// parallelism checks key groups: keyed state is split into the snapshot's
// max parallelism key groups, which a restore cannot change or split.
func (c *checker) parallelism(uid string, old *OperatorReport, par, jobMaxPar int) {
	if old.HasKeyedState() {
		if jobMaxPar != old.MaxParallelism {
			c.add(SeverityError, CodeMaxParallelismChanged, uid, "",
				"operator %s: the job's max parallelism is %d, the snapshot's %d: keyed state is split into max-parallelism key groups, fixed for the life of the state: set maxParallelism: %d in the job spec",
				uid, jobMaxPar, old.MaxParallelism, old.MaxParallelism)
		}
		if par > old.MaxParallelism {
			c.add(SeverityError, CodeParallelismAboveMax, uid, "",
				"operator %s: parallelism %d is above the snapshot's max parallelism %d: a subtask owns at least one key group and key groups cannot be split: use a parallelism of at most %d",
				uid, par, old.MaxParallelism, old.MaxParallelism)
		}
	}
	if old.Parallelism > 0 && par != old.Parallelism {
		c.add(SeverityInfo, CodeRescale, uid, "", "operator %s is rescaled from parallelism %d to %d (keyed state by key group, split lists divided, union lists and broadcast state copied)",
			uid, old.Parallelism, par)
	}
}

// states compares the snapshot's states of a matched operator with what
// the job's operator declares.
func (c *checker) states(uid string, old *OperatorReport, decl *Declarations) {
	matched := map[string]bool{}
	// Native (Pebble) keyed files are not read and the metadata may not
	// list their states: then the keyed states cannot be compared.
	keyedUnknown := !old.CountsAvailable && len(old.KeyGroups) > 0
	for _, s := range old.States {
		if s.Keyed && s.Kind != KindTimers {
			keyedUnknown = false
		}
	}
	if keyedUnknown {
		c.add(SeverityWarning, CodeNotVerified, uid, "",
			"operator %s: its keyed state is in native Pebble files whose states the metadata does not list, so they are not compared: check against a savepoint (canonical format) instead", uid)
		for _, d := range decl.Keyed {
			matched[d.Name] = true
		}
	}
	for i := range old.States {
		s := &old.States[i]
		if s.Kind == KindTimers {
			if !decl.KeyedAvailable {
				c.add(c.dropped(), CodeKeyedStateWithoutKeyBy, uid, s.Name,
					"operator %s: the snapshot holds %s of %d key(s) but the operator is not on a keyed stream (no keyBy): they would be dropped; give its input the keyBy it had",
					uid, s.Name, s.Keys)
			}
			continue
		}
		if s.Keyed {
			matched[s.Name] = true
			c.keyedState(uid, s, decl)
			continue
		}
		matched["\x00op/"+s.Name] = true
		c.operatorState(uid, s, decl)
	}
	for _, d := range decl.Keyed {
		if !matched[d.Name] {
			c.add(SeverityInfo, CodeStateNew, uid, d.Name, "operator %s: keyed %v state %q is new: it starts empty", uid, d.Kind, d.Name)
		}
	}
	for _, d := range decl.Operator {
		if !matched["\x00op/"+d.Name] {
			c.add(SeverityInfo, CodeStateNew, uid, d.Name, "operator %s: operator state %q (%s) is new: it starts empty", uid, d.Name, opKind(d.Mode))
		}
	}
}

func (c *checker) droppedFix() string {
	if c.opts.AllowNonRestoredState {
		return "it will be dropped (--allow-non-restored-state)"
	}
	return "declare it again under this name (a renamed state loses its data), or pass --allow-non-restored-state to drop it"
}

func (c *checker) keyedState(uid string, s *StateReport, decl *Declarations) {
	if !decl.KeyedAvailable {
		c.add(c.dropped(), CodeKeyedStateWithoutKeyBy, uid, s.Name,
			"operator %s: the snapshot holds keyed %s state %q but the operator is not on a keyed stream (no keyBy): give its input the keyBy it had",
			uid, s.Kind, s.Name)
		return
	}
	d, ok := decl.keyed(s.Name)
	if !ok {
		c.add(c.dropped(), CodeStateDropped, uid, s.Name, "operator %s no longer declares keyed %s state %q%s: %s",
			uid, s.Kind, s.Name, countText(s), c.droppedFix())
		return
	}
	bad := false
	if d.Kind.String() != s.Kind {
		bad = true
		c.add(SeverityError, CodeKindChanged, uid, s.Name,
			"operator %s: state %q is %s in the snapshot and declared %v by the job: a state's kind cannot change; declare a new state under another name and migrate in code",
			uid, s.Name, s.Kind, d.Kind)
	}
	if d.KeyCodec != s.KeyCodec || d.ValueCodec != s.ValueCodec {
		bad = true
		c.add(SeverityError, CodeCodecChanged, uid, s.Name,
			"operator %s: state %q has codec %s in the snapshot and %s in the job: the stored bytes would be misread; keep the codec id (a JSONCodec keeps its Name across versions and reads older versions)",
			uid, s.Name, s.Codec(), codecText(d.KeyCodec, d.ValueCodec))
	}
	if snapHasTTL, jobHasTTL := s.ttl != nil, d.TTL != nil; s.specKnown && snapHasTTL != jobHasTTL {
		bad = true
		c.add(SeverityError, CodeTTLChanged, uid, s.Name,
			"operator %s: state %q has TTL %s in the snapshot and %s in the job: enabling or disabling TTL changes the stored layout; keep it as it was or use a new state",
			uid, s.Name, orNone(s.TTL), ttlText(d.TTL))
	}
	c.version(uid, s)
	if !bad {
		c.add(SeverityInfo, CodeStateMatched, uid, s.Name, "operator %s: keyed %s state %q (%s)%s is restored", uid, s.Kind, s.Name, s.Codec(), countText(s))
	}
}

func (c *checker) operatorState(uid string, s *StateReport, decl *Declarations) {
	d, ok := decl.operator(s.Name)
	if !ok {
		c.add(c.dropped(), CodeStateDropped, uid, s.Name, "operator %s no longer declares operator state %q (%s)%s: %s",
			uid, s.Name, s.Kind, countText(s), c.droppedFix())
		return
	}
	bad := false
	if k := opKind(d.Mode); k != s.Kind {
		bad = true
		c.add(SeverityError, CodeKindChanged, uid, s.Name,
			"operator %s: operator state %q is %s in the snapshot and %s in the job: its redistribution on restore would differ; declare a new state under another name",
			uid, s.Name, s.Kind, k)
	}
	if d.KeyCodec != s.KeyCodec || d.ValueCodec != s.ValueCodec {
		bad = true
		c.add(SeverityError, CodeCodecChanged, uid, s.Name,
			"operator %s: operator state %q has codec %s in the snapshot and %s in the job: the stored bytes would be misread; keep the codec id",
			uid, s.Name, s.Codec(), codecText(d.KeyCodec, d.ValueCodec))
	}
	c.version(uid, s)
	if !bad {
		c.add(SeverityInfo, CodeStateMatched, uid, s.Name, "operator %s: operator state %q (%s, %s)%s is restored", uid, s.Name, s.Kind, s.Codec(), countText(s))
	}
}

// version warns when stored JSON values have a version above 0: the job's
// JSONCodec must read it (a dry run sees codec ids, not versions).
func (c *checker) version(uid string, s *StateReport) {
	if !strings.HasPrefix(s.ValueCodec, "json:") {
		return
	}
	v := int(s.CodecVersion)
	if s.MaxValueVersion != nil && *s.MaxValueVersion > v {
		v = *s.MaxValueVersion
	}
	if v == 0 {
		return
	}
	c.add(SeverityWarning, CodeCodecVersion, uid, s.Name,
		"operator %s: state %q holds values of %s version %d: the job's JSONCodec must have Version >= %d (a dry run cannot see codec versions)",
		uid, s.Name, s.ValueCodec, v, v)
}

func opKind(m api.OperatorStateMode) string {
	switch m {
	case api.SplitList:
		return KindOperatorList
	case api.UnionList:
		return KindUnionList
	case api.Broadcast:
		return KindBroadcastMap
	}
	return m.String()
}

func codecText(key, value string) string {
	if key != "" {
		return key + mapCodecSep + value
	}
	return value
}

func ttlText(t *api.TTLConfig) string {
	if t == nil {
		return "none"
	}
	return ttlString(t)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func countText(s *StateReport) string {
	if !s.Counted {
		return ""
	}
	if s.Keyed {
		return fmt.Sprintf(", %d entries of %d keys", s.Entries, s.Keys)
	}
	return fmt.Sprintf(", %d entries", s.Entries)
}
