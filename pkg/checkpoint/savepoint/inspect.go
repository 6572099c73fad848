package savepoint

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/checkpoint/snapshot"
	"github.com/flowrt/flow/pkg/checkpoint/storage"
	"github.com/flowrt/flow/pkg/keygroup"
	"github.com/flowrt/flow/pkg/statebackend"
	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// State kinds as reported (the values of StateDescriptor.kind in
// flow.checkpoint.v1): the keyed kinds are api.StateKind's names.
const (
	KindOperatorList = "operator_list"
	KindUnionList    = "union_list"
	KindBroadcastMap = "broadcast_map"
	KindTimers       = "timers"
)

// Names under which timers are reported (they are the reserved states
// statebackend.EventTimersState and ProcessingTimersState).
const (
	EventTimers      = "timers/event-time"
	ProcessingTimers = "timers/processing-time"
)

// mapCodecSep joins the key and value codec of a map state in
// StateDescriptor.codec ("string->int64").
const mapCodecSep = "->"

// Report is what a checkpoint or savepoint holds.
type Report struct {
	// Path is the snapshot directory's URL.
	Path             string           `json:"path"`
	FormatVersion    uint32           `json:"formatVersion"`
	Savepoint        bool             `json:"savepoint"`
	JobID            string           `json:"jobId"`
	JobName          string           `json:"jobName"`
	CheckpointID     int64            `json:"checkpointId"`
	TriggerTimeMs    int64            `json:"triggerTimeMs"`
	CompletionTimeMs int64            `json:"completionTimeMs"`
	Operators        []OperatorReport `json:"operators"`
	Totals           Totals           `json:"totals"`
}

// Totals sum the operators of a Report.
type Totals struct {
	Operators int `json:"operators"`
	States    int `json:"states"`
	// Entries and Bytes sum the counted states (see CountsAvailable).
	Entries int64 `json:"entries"`
	Bytes   int64 `json:"bytes"`
	// Files and FileBytes are the state files the metadata references.
	Files     int   `json:"files"`
	FileBytes int64 `json:"fileBytes"`
	// StateSize sums the subtasks' state_size.
	StateSize int64 `json:"stateSize"`
	// CountsAvailable is false when any operator's counts are unavailable.
	CountsAvailable bool `json:"countsAvailable"`
}

// OperatorReport is the state of one operator (by uid).
type OperatorReport struct {
	UID            string `json:"uid"`
	OperatorID     string `json:"operatorId"`
	Type           string `json:"type"`
	Parallelism    int    `json:"parallelism"`
	MaxParallelism int    `json:"maxParallelism"`
	// Subtasks is the number of subtask entries in the metadata.
	Subtasks int `json:"subtasks"`
	// KeyedFormats are the formats of the keyed handles ("canonical",
	// "pebble"), sorted.
	KeyedFormats []string `json:"keyedFormats,omitempty"`
	// KeyGroups are the key groups the keyed handles cover;
	// KeyGroupsWithData those that hold at least one entry (counted
	// handles only).
	KeyGroups         []Range `json:"keyGroups,omitempty"`
	KeyGroupsWithData []Range `json:"keyGroupsWithData,omitempty"`
	// States: keyed states (by name), then timers, then operator states.
	States []StateReport `json:"states"`
	// SourcePositions is the number of subtasks with a source position.
	SourcePositions int `json:"sourcePositions"`
	// InFlightChannels is the number of in-flight buffer handles
	// (unaligned checkpoints).
	InFlightChannels int   `json:"inFlightChannels"`
	Files            int   `json:"files"`
	FileBytes        int64 `json:"fileBytes"`
	StateSize        int64 `json:"stateSize"`
	// CountsAvailable is false when some keyed state is in a native
	// (Pebble) format, whose entries are not counted.
	CountsAvailable bool `json:"countsAvailable"`
}

// HasState reports whether the operator holds anything a restore would
// use: keyed or operator state, timers, source positions or in-flight
// data.
func (o *OperatorReport) HasState() bool {
	return len(o.States) > 0 || len(o.KeyGroups) > 0 || o.SourcePositions > 0 || o.InFlightChannels > 0
}

// HasKeyedState reports whether the operator holds keyed state or timers
// (so its key groups matter).
func (o *OperatorReport) HasKeyedState() bool {
	if len(o.KeyGroups) > 0 {
		return true
	}
	for _, s := range o.States {
		if s.Keyed {
			return true
		}
	}
	return false
}

// State returns the state named name, or nil.
func (o *OperatorReport) State(name string) *StateReport {
	for i := range o.States {
		if o.States[i].Name == name {
			return &o.States[i]
		}
	}
	return nil
}

// StateReport is one declared state of an operator.
type StateReport struct {
	Name string `json:"name"`
	// Kind: value, list, map, reducing, aggregating (keyed), timers,
	// operator_list, union_list, broadcast_map.
	Kind  string `json:"kind"`
	Keyed bool   `json:"keyed"`
	// KeyCodec is the map key codec (map and broadcast map states).
	KeyCodec   string `json:"keyCodec,omitempty"`
	ValueCodec string `json:"valueCodec,omitempty"`
	// CodecVersion is the version the metadata records (0 if none).
	CodecVersion uint32 `json:"codecVersion,omitempty"`
	// TTL is the state's time-to-live configuration, empty without TTL.
	TTL string `json:"ttl,omitempty"`
	// MaxValueVersion is, for JSON codecs of counted states, the highest
	// version byte among the stored values: a job reading the state needs
	// a JSONCodec with Version at least this.
	MaxValueVersion *int `json:"maxValueVersion,omitempty"`
	// Counted is false when the entries are not counted (native format,
	// or a header-only read): Entries, Keys, Elements, Bytes and
	// KeyGroups are then zero.
	Counted bool `json:"counted"`
	// Entries: canonical entries (a value, a whole list, a map entry, a
	// timer) or operator-state items.
	Entries int64 `json:"entries"`
	// Keys is the number of distinct keys with an entry (keyed states).
	Keys int64 `json:"keys"`
	// Elements is the number of list elements (list states).
	Elements int64 `json:"elements,omitempty"`
	// Bytes is the payload: keys, namespaces, user keys and values.
	Bytes int64 `json:"bytes"`
	// KeyGroups is the number of key groups holding data.
	KeyGroups int `json:"keyGroups"`

	// ttl and specKnown: the TTL from a keyed file's header (the
	// metadata does not record TTL).
	ttl       *api.TTLConfig
	specKnown bool
}

// Codec renders the codecs as in StateDescriptor.codec: the value codec,
// or "KEY->VALUE" for maps.
func (s *StateReport) Codec() string {
	if s.KeyCodec != "" {
		return s.KeyCodec + mapCodecSep + s.ValueCodec
	}
	return s.ValueCodec
}

// Range is an inclusive range of key groups.
type Range struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

func (r Range) String() string {
	if r.Start == r.End {
		return fmt.Sprint(r.Start)
	}
	return fmt.Sprintf("%d-%d", r.Start, r.End)
}

// RangesString renders ranges as "0-5,9,12-127" ("none" when empty).
func RangesString(rs []Range) string {
	if len(rs) == 0 {
		return "none"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// ranges compresses a key-group bitmap.
func ranges(set []bool) []Range {
	var out []Range
	for kg := 0; kg < len(set); kg++ {
		if !set[kg] {
			continue
		}
		start := kg
		for kg+1 < len(set) && set[kg+1] {
			kg++
		}
		out = append(out, Range{Start: start, End: kg})
	}
	return out
}

// URL turns a path without a scheme into a file:// URL of its absolute
// path; URLs (file://, s3://, ...) are returned as they are.
func URL(pathOrURL string) string {
	if pathOrURL == "" || strings.Contains(pathOrURL, "://") {
		return pathOrURL
	}
	if abs, err := filepath.Abs(pathOrURL); err == nil {
		return "file://" + filepath.ToSlash(abs)
	}
	return pathOrURL
}

// Inspect reads the checkpoint or savepoint at url (its directory or its
// `_metadata`; file://, s3://, ... or mem:// URLs, or a local path) and every state file it
// references, and reports what it holds. The files of native Pebble
// handles are verified (downloaded one handle at a time into a temporary
// directory: each file's recorded size, every SST block's checksum, and
// the DB opened read-only) but not counted: their operators'
// CountsAvailable is false. A corrupt file is an error naming it and
// wrapping snapshot.ErrCorrupt (canonical files) or pebble.ErrCorrupt.
func Inspect(ctx context.Context, url string) (*Report, error) {
	return inspect(ctx, url, true)
}

// inspect reads the metadata and, with counts, every state file in full
// (verifying native Pebble files); without counts it reads only the
// headers of canonical keyed files (the declared states) and the
// operator-state files (which are small).
func inspect(ctx context.Context, url string, counts bool) (*Report, error) {
	sn, err := storage.OpenSnapshot(ctx, URL(url))
	if err != nil {
		return nil, err
	}
	defer sn.Close()
	return inspectSnapshot(ctx, sn, counts)
}

// inspectSnapshot is inspect of an open snapshot.
func inspectSnapshot(ctx context.Context, sn *storage.Snapshot, counts bool) (*Report, error) {
	md := sn.Metadata
	rep := &Report{
		Path: sn.Dir, FormatVersion: md.GetFormatVersion(), Savepoint: md.GetSavepoint(),
		JobID: md.GetJobId(), JobName: md.GetJobName(), CheckpointID: md.GetCheckpointId(),
		TriggerTimeMs: md.GetTriggerTimeMs(), CompletionTimeMs: md.GetCompletionTimeMs(),
		Operators: []OperatorReport{},
	}
	rep.Totals.CountsAvailable = true
	for _, op := range md.GetOperators() {
		or, err := inspectOperator(ctx, op, sn.Files, counts)
		if err != nil {
			return nil, fmt.Errorf("inspect %s: operator %q: %w", sn.Dir, op.GetUid(), err)
		}
		rep.Operators = append(rep.Operators, *or)
		t := &rep.Totals
		t.Operators++
		t.States += len(or.States)
		for _, s := range or.States {
			t.Entries += s.Entries
			t.Bytes += s.Bytes
		}
		t.Files += or.Files
		t.FileBytes += or.FileBytes
		t.StateSize += or.StateSize
		t.CountsAvailable = t.CountsAvailable && or.CountsAvailable
	}
	return rep, nil
}

// stateAcc accumulates one state over every file of an operator.
type stateAcc struct {
	StateReport
	kgs  []bool
	spec api.StateSpec
}

type operatorAcc struct {
	maxPar  int
	states  map[string]*stateAcc
	covered []bool
	data    []bool
	counted bool
}

func (a *operatorAcc) state(name string) *stateAcc {
	s := a.states[name]
	if s == nil {
		s = &stateAcc{StateReport: StateReport{Name: name}}
		a.states[name] = s
	}
	return s
}

func inspectOperator(ctx context.Context, op *checkpointv1.OperatorState, src snapshot.Source, counts bool) (*OperatorReport, error) {
	open := snapshot.OpenFrom(src)
	maxPar := int(op.GetMaxParallelism())
	if maxPar < 1 || maxPar > keygroup.UpperBoundMaxParallelism {
		return nil, fmt.Errorf("max parallelism %d out of range 1..%d: %w", maxPar, keygroup.UpperBoundMaxParallelism, snapshot.ErrCorrupt)
	}
	or := &OperatorReport{
		UID: op.GetUid(), OperatorID: op.GetOperatorId(), Type: op.GetType(),
		Parallelism: int(op.GetParallelism()), MaxParallelism: maxPar,
		Subtasks: len(op.GetSubtasks()), States: []StateReport{},
	}
	acc := &operatorAcc{maxPar: maxPar, states: map[string]*stateAcc{},
		covered: make([]bool, maxPar), data: make([]bool, maxPar), counted: counts}
	// Declarations recorded in the metadata; the files refine them.
	for _, d := range op.GetStates() {
		s := acc.state(d.GetName())
		s.Kind, s.Keyed, s.CodecVersion = d.GetKind(), d.GetKeyed(), d.GetCodecVersion()
		s.KeyCodec, s.ValueCodec = splitCodec(d.GetKind(), d.GetCodec())
	}
	formats := map[string]bool{}
	for _, st := range op.GetSubtasks() {
		or.StateSize += st.GetStateSize()
		if len(st.GetSourcePosition()) > 0 {
			or.SourcePositions++
		}
		or.InFlightChannels += len(st.GetInFlight())
		for _, f := range storage.SubtaskFiles(st) {
			or.Files++
			or.FileBytes += f.GetSize()
		}
		for _, h := range st.GetKeyed() {
			formats[h.GetFormat()] = true
			if err := inspectKeyed(ctx, acc, h, src, counts); err != nil {
				return nil, fmt.Errorf("subtask %d: %w", st.GetSubtask(), err)
			}
		}
		if len(st.GetOperatorState()) > 0 {
			if err := inspectOperatorState(ctx, acc, st.GetOperatorState(), open); err != nil {
				return nil, fmt.Errorf("subtask %d: %w", st.GetSubtask(), err)
			}
		}
	}
	for f := range formats {
		or.KeyedFormats = append(or.KeyedFormats, f)
	}
	sort.Strings(or.KeyedFormats)
	or.KeyGroups = ranges(acc.covered)
	if acc.counted {
		or.KeyGroupsWithData = ranges(acc.data)
	}
	or.CountsAvailable = acc.counted
	for _, s := range acc.states {
		if s.kgs != nil {
			for _, has := range s.kgs {
				if has {
					s.KeyGroups++
				}
			}
		}
		s.Counted = acc.counted || !s.Keyed
		or.States = append(or.States, s.StateReport)
	}
	sort.Slice(or.States, func(i, j int) bool {
		a, b := &or.States[i], &or.States[j]
		if ra, rb := stateRank(a), stateRank(b); ra != rb {
			return ra < rb
		}
		return a.Name < b.Name
	})
	return or, nil
}

func stateRank(s *StateReport) int {
	switch {
	case s.Kind == KindTimers:
		return 1
	case s.Keyed:
		return 0
	}
	return 2
}

// splitCodec splits StateDescriptor.codec of a map state ("KEY->VALUE").
func splitCodec(kind, codec string) (key, value string) {
	if kind == api.StateMap.String() || kind == KindBroadcastMap {
		if k, v, ok := strings.Cut(codec, mapCodecSep); ok {
			return k, v
		}
	}
	return "", codec
}

// ttlString renders a TTL configuration in a stable form (part of the
// report's JSON): "1h0m0s update=create-and-write
// visibility=never-return-expired time=processing-time".
func ttlString(t *api.TTLConfig) string {
	if t == nil {
		return ""
	}
	update := map[api.TTLUpdate]string{api.OnCreateAndWrite: "create-and-write", api.OnReadAndWrite: "read-and-write"}[t.Update]
	vis := map[api.TTLVisibility]string{api.NeverReturnExpired: "never-return-expired", api.ReturnExpiredIfNotCleanedUp: "return-expired-if-not-cleaned-up"}[t.Visibility]
	tm := map[api.TTLTime]string{api.TTLProcessingTime: "processing-time", api.TTLEventTime: "event-time"}[t.Time]
	return fmt.Sprintf("%v update=%s visibility=%s time=%s", t.TTL, update, vis, tm)
}

func inspectKeyed(ctx context.Context, acc *operatorAcc, h *checkpointv1.KeyedStateHandle, src snapshot.Source, counts bool) error {
	open := snapshot.OpenFrom(src)
	start, end := int(h.GetKeyGroupStart()), int(h.GetKeyGroupEnd())
	if start < 0 || start > end || end >= acc.maxPar {
		return fmt.Errorf("keyed handle covers key groups [%d, %d], outside [0, %d]: %w", start, end, acc.maxPar-1, snapshot.ErrCorrupt)
	}
	for kg := start; kg <= end; kg++ {
		acc.covered[kg] = true
	}
	switch h.GetFormat() {
	case snapshot.FormatCanonical, snapshot.FormatHeap:
	default:
		// Native files: only the metadata's declarations are known; a
		// full read verifies them.
		acc.counted = false
		if !counts {
			return nil
		}
		if nf, err := statebackend.LookupNative(h.GetFormat()); err == nil {
			return verifyNative(ctx, nf, h, src, acc.maxPar)
		}
		return nil
	}
	if len(h.GetFiles()) != 1 {
		return fmt.Errorf("canonical keyed handle [%d, %d] has %d files, want 1: %w", start, end, len(h.GetFiles()), snapshot.ErrCorrupt)
	}
	name := h.GetFiles()[0].GetPath()
	// The header (declared states) comes first: read it, stopping at the
	// first entry; with counts, read the whole file again knowing it.
	hdr, err := readKeyed(ctx, open, name, func(statebackend.Entry) error { return errStop })
	if err != nil {
		return err
	}
	if hdr.MaxParallelism != acc.maxPar {
		return fmt.Errorf("snapshot file %s has max parallelism %d, the metadata %d: %w", name, hdr.MaxParallelism, acc.maxPar, snapshot.ErrMismatch)
	}
	if hdr.KeyGroups.Start != start || hdr.KeyGroups.End != end {
		return fmt.Errorf("snapshot file %s holds key groups %v, its handle says [%d, %d]: %w", name, hdr.KeyGroups, start, end, snapshot.ErrMismatch)
	}
	c := &keyedCounter{acc: acc, byName: map[string]*stateAcc{}}
	for _, spec := range hdr.States {
		s := acc.state(spec.Name)
		s.Kind, s.Keyed, s.KeyCodec, s.ValueCodec = spec.Kind.String(), true, spec.KeyCodec, spec.ValueCodec
		s.ttl, s.TTL, s.spec, s.specKnown = spec.TTL, ttlString(spec.TTL), spec, true
		c.byName[spec.Name] = s
	}
	if !counts {
		return nil
	}
	_, err = readKeyed(ctx, open, name, c.add)
	return err
}

// verifyNative checks the files of a native handle (Pebble's) with the
// factory of its format: it downloads them into a temporary directory
// (removed after), checks each with VerifyFile (the size the handle
// records, every SST block against its checksum), the whole (Pebble's
// MANIFEST) with VerifyCheckpoint, and opens it read-only, which reads the
// states it registered.
func verifyNative(ctx context.Context, nf statebackend.NativeFactory, h *checkpointv1.KeyedStateHandle, src snapshot.Source, maxPar int) error {
	r := keygroup.Range{Start: int(h.GetKeyGroupStart()), End: int(h.GetKeyGroupEnd())}
	format := nf.Name()
	if len(h.GetFiles()) == 0 {
		return fmt.Errorf("native %s handle %v has no files: %w", format, r, snapshot.ErrCorrupt)
	}
	dir, err := os.MkdirTemp("", "flow-inspect-")
	if err != nil {
		return fmt.Errorf("verify native %s handle %v: %w", format, r, err)
	}
	defer os.RemoveAll(dir)
	names := make(map[string]string, len(h.GetFiles()))
	for _, f := range h.GetFiles() {
		name := f.GetLocalName()
		if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			return fmt.Errorf("native %s handle %v: file %s has local name %q: %w", format, r, f.GetPath(), name, snapshot.ErrCorrupt)
		}
		local := filepath.Join(dir, name)
		if err := src.Download(ctx, f.GetPath(), local); err != nil {
			return err
		}
		if err := nf.VerifyFile(local, f.GetPath(), f.GetSize()); err != nil {
			return err
		}
		names[name] = f.GetPath()
	}
	if err := nf.VerifyCheckpoint(dir, names); err != nil {
		return err
	}
	e, err := nf.OpenReadOnly(dir, statebackend.Config{
		Options: statebackend.Options{KeyGroups: r, MaxParallelism: maxPar},
		Logger:  slog.New(slog.DiscardHandler), // its errors are returned
	})
	if err != nil {
		return fmt.Errorf("native %s handle %v: %w", format, r, err)
	}
	if err := e.Close(); err != nil {
		return fmt.Errorf("native %s handle %v: %w", format, r, err)
	}
	return nil
}

// errStop ends a read after the header.
var errStop = errors.New("stop after the header")

func readKeyed(ctx context.Context, open snapshot.OpenFunc, name string, fn func(statebackend.Entry) error) (*snapshot.KeyedHeader, error) {
	rc, err := open(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	defer rc.Close()
	hdr, err := snapshot.ReadKeyed(rc, name, fn)
	if errors.Is(err, errStop) {
		err = nil
	}
	return hdr, err
}

// keyedCounter counts the entries of one canonical file. Within a key
// group, entries are sorted by their bytes (state index, then key), so the
// entries of one key of one state are adjacent: a key is new when it
// differs from the previous entry's.
type keyedCounter struct {
	acc     *operatorAcc
	byName  map[string]*stateAcc
	prev    *stateAcc
	prevKG  int
	prevKey []byte
}

func (c *keyedCounter) add(e statebackend.Entry) error {
	s := c.byName[e.State]
	if s == nil {
		switch e.State {
		case statebackend.EventTimersState:
			s = c.timers(EventTimers)
		case statebackend.ProcessingTimersState:
			s = c.timers(ProcessingTimers)
		default:
			return fmt.Errorf("entry of undeclared state %q: %w", e.State, snapshot.ErrCorrupt)
		}
		c.byName[e.State] = s
	}
	s.Entries++
	s.Bytes += int64(len(e.Key) + len(e.Namespace) + len(e.UserKey) + len(e.Value))
	if s != c.prev || e.KeyGroup != c.prevKG || !bytes.Equal(e.Key, c.prevKey) {
		s.Keys++
		c.prev, c.prevKG, c.prevKey = s, e.KeyGroup, append(c.prevKey[:0], e.Key...)
	}
	if s.kgs == nil {
		s.kgs = make([]bool, c.acc.maxPar)
	}
	s.kgs[e.KeyGroup] = true
	c.acc.data[e.KeyGroup] = true
	if s.Kind == KindTimers {
		return nil
	}
	json := strings.HasPrefix(s.ValueCodec, "json:")
	if s.spec.Kind != api.StateList {
		if json {
			s.noteVersion(e.Value)
		}
		return nil
	}
	for b := e.Value; len(b) > 0; {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return fmt.Errorf("list state %q, key group %d: bad element frame: %w", s.Name, e.KeyGroup, snapshot.ErrCorrupt)
		}
		s.Elements++
		if json {
			s.noteVersion(b[w : w+int(n)])
		}
		b = b[w+int(n):]
	}
	return nil
}

func (c *keyedCounter) timers(name string) *stateAcc {
	s := c.acc.state(name)
	s.Kind, s.Keyed = KindTimers, true
	return s
}

// noteVersion records the version byte of a JSON-encoded value (after the
// 8-byte refresh timestamp of TTL states).
func (s *stateAcc) noteVersion(v []byte) {
	if s.ttl != nil {
		if len(v) < 8 {
			return
		}
		v = v[8:]
	}
	if len(v) == 0 {
		return
	}
	if ver := int(v[0]); s.MaxValueVersion == nil || ver > *s.MaxValueVersion {
		s.MaxValueVersion = &ver
	}
}

func inspectOperatorState(ctx context.Context, acc *operatorAcc, handles []*checkpointv1.OperatorStateHandle, open snapshot.OpenFunc) error {
	states, err := snapshot.ReadOperatorState(ctx, open, handles)
	if err != nil {
		return err
	}
	for _, st := range states {
		s := acc.state(st.Spec.Name)
		s.Keyed = false
		switch st.Spec.Mode {
		case api.SplitList:
			s.Kind = KindOperatorList
		case api.UnionList:
			s.Kind = KindUnionList
		case api.Broadcast:
			s.Kind = KindBroadcastMap
		}
		s.KeyCodec, s.ValueCodec = st.Spec.KeyCodec, st.Spec.ValueCodec
		json := strings.HasPrefix(s.ValueCodec, "json:")
		for _, it := range st.Items {
			s.Entries++
			s.Bytes += int64(len(it))
			if json {
				s.noteVersion(it)
			}
		}
		for _, e := range st.Entries {
			s.Entries++
			s.Bytes += int64(len(e[0]) + len(e[1]))
			if json {
				s.noteVersion(e[1])
			}
		}
	}
	return nil
}
