package file

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flowrt/flow/pkg/api"
)

// SinkName is the registered type name of the sink.
const SinkName = "file"

// ErrPartMissing: a pending part recorded in the restored checkpoint is
// neither pending nor committed in the output directory.
var ErrPartMissing = errors.New("pending part missing")

// SinkType returns the file sink type (registered in api.Default).
func SinkType() api.OperatorType {
	return api.OperatorType{
		Name: SinkName, Kind: api.KindSink,
		Doc: "Writes record values as JSON lines into part files part-<job>-<operator>-<run>-<subtask>-<n>.jsonl of a directory; exactly once with checkpoints.",
		Fields: []api.Field{
			{Name: "path", Type: api.TypeString, Required: true, Validate: validatePath,
				Doc: "Output directory: an absolute path or file:// URL (created if missing). Part files of other runs in it are left alone."},
			{Name: "max_file_size", Type: api.TypeInt, Default: int64(128 << 20), Validate: func(v any) error {
				if v.(int64) < 0 {
					return errors.New("must not be negative")
				}
				return nil
			}, Doc: "Roll to a new part file after this many bytes; 0 never rolls."},
		},
		Example: "- id: out\n  type: file\n  inputs: [gen]\n  config:\n    path: /data/out\n",
		NewSink: func(cfg api.Config) (api.Sink, error) {
			dir, err := localPath(cfg.String("path"))
			if err != nil {
				return nil, fmt.Errorf("file sink: path: %w", err)
			}
			return &Sink{dir: dir, maxSize: cfg.Int("max_file_size")}, nil
		},
	}
}

// validatePath refuses what localPath refuses.
func validatePath(v any) error {
	_, err := localPath(v.(string))
	return err
}

// localPath returns the local path of a path config value: an absolute
// path, or a file:// URL of one. A relative path is refused: it would
// resolve against the working directory of each TaskManager.
func localPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("is empty: give an absolute path such as /data/out")
	}
	local := p
	if rest, ok := strings.CutPrefix(p, "file://"); ok {
		local = rest
	}
	if !filepath.IsAbs(local) {
		return "", fmt.Errorf("%q is relative (it would resolve against each TaskManager's working directory): give an absolute path or file:// URL such as /data/out", p)
	}
	return local, nil
}

// Sink is one file sink subtask. With checkpoints it is an exactly-once
// two-phase-commit sink (api.CheckpointedFunction, api.CheckpointListener):
// SnapshotState closes the in-progress part and records it, with every
// part still pending, in operator state; NotifyCheckpointComplete(n)
// commits the parts pending for checkpoints <= n. A restore commits the
// pending parts of the restored checkpoint and deletes the parts the
// failed attempts of the same job and operator wrote after it, once the
// restored job has completed a checkpoint (or at the end of input), so a
// restore that fails touches nothing. Committed files are never deleted.
type Sink struct {
	dir     string
	maxSize int64
	subtask int
	par     int

	// Part names: part-<job>-<op>-<run>-<subtask>-<n>.jsonl.
	job, op, run string
	ownsJob      bool // the job id is known: parts of its dead attempts can be told apart

	next    int
	f       *os.File
	w       *bufio.Writer
	size    int64
	cur     string        // committed path of the in-progress part
	pending []pendingPart // closed, fsynced, not yet committed (own and restored)

	// firstSnapshot is the first checkpoint this subtask took part in (0:
	// none yet); its completion proves the restored job is running.
	firstSnapshot int64
	// restored holds every pending part of the restored checkpoint (of
	// every old subtask), which the cleanup must not delete; cleaned says
	// the cleanup ran.
	restored map[string]bool
	cleaned  bool

	state *api.OperatorListState[[]byte] // nil without operator state
}

// pendingPart is a closed part waiting for its commit: Path is its
// committed path (the part is at hiddenPath(Path) until then). Checkpoint
// is the checkpoint whose snapshot covers it (0: none yet).
type pendingPart struct {
	Path       string `json:"path"`
	Checkpoint int64  `json:"checkpoint"`
}

// sinkState is one subtask's element of the sink's union list state
// (format 2).
type sinkState struct {
	V       int           `json:"v"`
	Subtask int           `json:"subtask"`
	Pending []pendingPart `json:"pending"`
}

// sinkStateV1 is an element written by Flow before part names had a job
// and run: parts part-<subtask>-<n>.jsonl of the output directory.
type sinkStateV1 struct {
	Subtask int `json:"subtask"`
	Next    int `json:"next"`
	Pending []struct {
		Part       int   `json:"part"`
		Checkpoint int64 `json:"checkpoint"`
	} `json:"pending"`
}

const stateVersion = 2

// stateName is the sink's operator state (a union list: after rescaling
// every subtask sees every old subtask's parts and handles those of old
// subtask j when j mod parallelism is its index). The name predates
// format 2; each element says its format ("v", absent in format 1).
const stateName = "file-sink-parts-v1"

// PartName is the committed name of part n of a subtask. job, op and run
// are the 8-hex-digit tags described in the package doc.
func PartName(job, op, run string, subtask, n int) string {
	return fmt.Sprintf("part-%s-%s-%s-%d-%d.jsonl", job, op, run, subtask, n)
}

// hiddenPath is where a part is written and kept until its commit.
func hiddenPath(committed string) string {
	return filepath.Join(filepath.Dir(committed), "."+filepath.Base(committed)+".inprogress")
}

// tag is the first 8 characters of id when they are lowercase hex (Flow's
// job ids are), else the first 8 hex digits of its SHA-256.
func tag(id string) string {
	if len(id) >= 8 && isHex(id[:8]) {
		return id[:8]
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:4])
}

func isHex(s string) bool {
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Part is a parsed part file name.
type Part struct {
	Job, Operator, Run string // 8 hex digits each
	Subtask, N         int
	Committed          bool // false: the hidden in-progress or pending name
}

// ParsePartName parses the name (not the path) of a part file the sink
// writes: part-<job>-<operator>-<run>-<subtask>-<n>.jsonl, or the hidden
// name .part-…jsonl.inprogress it has until it is committed.
func ParsePartName(name string) (Part, bool) {
	p := Part{Committed: true}
	base := name
	if b, ok := strings.CutPrefix(name, "."); ok {
		if base, ok = strings.CutSuffix(b, ".inprogress"); !ok {
			return Part{}, false
		}
		p.Committed = false
	}
	base, ok1 := strings.CutPrefix(base, "part-")
	base, ok2 := strings.CutSuffix(base, ".jsonl")
	f := strings.Split(base, "-")
	if !ok1 || !ok2 || len(f) != 5 {
		return Part{}, false
	}
	for _, t := range f[:3] {
		if len(t) != 8 || !isHex(t) {
			return Part{}, false
		}
	}
	var err1, err2 error
	p.Job, p.Operator, p.Run = f[0], f[1], f[2]
	p.Subtask, err1 = strconv.Atoi(f[3])
	p.N, err2 = strconv.Atoi(f[4])
	if err1 != nil || err2 != nil || p.Subtask < 0 || p.N < 0 {
		return Part{}, false
	}
	return p, true
}

// Open implements api.Sink.
func (s *Sink) Open(ctx api.Context) error {
	info := ctx.Info()
	s.subtask, s.par = info.SubtaskIndex, max(info.Parallelism, 1)
	uid := info.OperatorUID
	if uid == "" {
		uid = info.OperatorID
	}
	s.job, s.op, s.ownsJob = tag(info.JobID), tag("operator:"+uid), info.JobID != ""
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("file sink: random run id: %w", err)
	}
	s.run = hex.EncodeToString(b[:])
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("file sink: create output directory: %w", err)
	}
	if store, err := api.OperatorStateStoreOf(ctx); err == nil {
		if s.state, err = api.GetOperatorListState(store, api.OperatorListStateDescriptor[[]byte]{Name: stateName, Codec: api.BytesCodec(), Union: true}); err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
	}
	return nil
}

// Write implements api.Sink.
func (s *Sink) Write(r api.Record) error {
	if s.f == nil {
		if err := s.openPart(); err != nil {
			return err
		}
	}
	if _, err := s.w.Write(r.Value); err != nil {
		return fmt.Errorf("file sink: write %s: %w", s.f.Name(), err)
	}
	if err := s.w.WriteByte('\n'); err != nil {
		return fmt.Errorf("file sink: write %s: %w", s.f.Name(), err)
	}
	s.size += int64(len(r.Value)) + 1
	if s.maxSize > 0 && s.size >= s.maxSize {
		return s.closePart()
	}
	return nil
}

// openPart starts the next part. A name that exists (committed or not) is
// skipped, never overwritten.
func (s *Sink) openPart() error {
	for {
		path := filepath.Join(s.dir, PartName(s.job, s.op, s.run, s.subtask, s.next))
		s.next++
		if _, err := os.Lstat(path); err == nil {
			continue
		}
		f, err := os.OpenFile(hiddenPath(path), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
		s.f, s.cur, s.size = f, path, 0
		if s.w == nil {
			s.w = bufio.NewWriterSize(f, 64<<10)
		} else {
			s.w.Reset(f)
		}
		return nil
	}
}

// closePart flushes and fsyncs the in-progress part and makes it pending.
func (s *Sink) closePart() error {
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	if err := s.w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("file sink: flush %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("file sink: fsync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("file sink: close %s: %w", f.Name(), err)
	}
	s.pending = append(s.pending, pendingPart{Path: s.cur})
	return nil
}

// commitPart renames a pending part to its committed path. It is
// idempotent: a part already committed is fine.
func commitPart(path string) error {
	from := hiddenPath(path)
	if _, err := os.Lstat(path); err == nil {
		if _, err := os.Lstat(from); err == nil {
			return fmt.Errorf("file sink: commit %s: a committed file of that name exists already: remove one of %s and %s", path, from, path)
		}
		return nil // committed before
	}
	err := os.Rename(from, path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file sink: commit %s: neither it nor %s exists (was the output directory changed outside the job?): %w", path, from, ErrPartMissing)
	}
	if err != nil {
		return fmt.Errorf("file sink: commit: %w", err)
	}
	return nil
}

// commit commits the pending parts for which keep returns true and syncs
// their directories.
func (s *Sink) commit(keep func(pendingPart) bool) error {
	rest := s.pending[:0]
	dirs := map[string]bool{}
	var err error
	for _, p := range s.pending {
		if err != nil || !keep(p) {
			rest = append(rest, p)
			continue
		}
		if err = commitPart(p.Path); err != nil {
			rest = append(rest, p)
			continue
		}
		dirs[filepath.Dir(p.Path)] = true
	}
	s.pending = rest
	for d := range dirs {
		if serr := syncDir(d); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("file sink: fsync directory %s: %w", dir, err)
	}
	return nil
}

// SnapshotState implements api.CheckpointedFunction: the in-progress part
// is closed (pre-committed) and every pending part is recorded for
// checkpoint id.
func (s *Sink) SnapshotState(id int64) error {
	if err := s.closePart(); err != nil {
		return err
	}
	for i := range s.pending {
		if s.pending[i].Checkpoint == 0 {
			s.pending[i].Checkpoint = id
		}
	}
	if s.firstSnapshot == 0 {
		s.firstSnapshot = id
	}
	if s.state == nil {
		return nil
	}
	b, err := json.Marshal(sinkState{V: stateVersion, Subtask: s.subtask, Pending: s.pending})
	if err != nil {
		return fmt.Errorf("file sink: encode state: %w", err)
	}
	return s.state.Update([][]byte{b})
}

// NotifyCheckpointComplete implements api.CheckpointListener: commit the
// parts pending for checkpoints up to id (a lost or late notification is
// covered by a later one). The first completed checkpoint this subtask
// took part in also runs the cleanup.
func (s *Sink) NotifyCheckpointComplete(id int64) error {
	if err := s.commit(func(p pendingPart) bool { return p.Checkpoint != 0 && p.Checkpoint <= id }); err != nil {
		return err
	}
	if s.firstSnapshot != 0 && id >= s.firstSnapshot {
		return s.cleanup()
	}
	return nil
}

// NotifyCheckpointAborted implements api.CheckpointListener. The parts of
// an aborted checkpoint stay pending: the next completed checkpoint, which
// records them too, commits them.
func (s *Sink) NotifyCheckpointAborted(int64) error { return nil }

// InitializeState implements api.CheckpointedFunction. After a restore it
// reads the restored parts and checks that each pending part of the
// subtasks it takes over is still pending or committed. It changes no
// file: the restored parts join the pending ones, to be committed with
// the first checkpoint that completes (or at the end of input), when the
// restored job is known to run.
func (s *Sink) InitializeState(restored bool) error {
	if !restored || s.state == nil {
		return nil
	}
	elems, err := s.state.Get()
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.restored = map[string]bool{}
	var mine []pendingPart
	for i, b := range elems {
		sub, parts, err := s.decodeState(b)
		if err == nil && sub < 0 {
			err = fmt.Errorf("subtask %d is negative", sub)
		}
		if err != nil {
			return fmt.Errorf("file sink: restored state element %d: %w", i, err)
		}
		for _, p := range parts {
			s.restored[p] = true
			if sub%s.par == s.subtask {
				mine = append(mine, pendingPart{Path: p})
			}
		}
	}
	for _, p := range mine {
		if _, err := os.Lstat(hiddenPath(p.Path)); err == nil {
			s.pending = append(s.pending, p)
			continue
		}
		if _, err := os.Lstat(p.Path); err == nil {
			continue // committed before
		}
		return fmt.Errorf("file sink: restore: part %s of the checkpoint is neither pending (%s) nor committed (was the output directory changed outside the job?): %w", p.Path, hiddenPath(p.Path), ErrPartMissing)
	}
	return nil
}

// decodeState decodes one element of the restored union list state into
// its subtask and the committed paths of its pending parts.
func (s *Sink) decodeState(b []byte) (int, []string, error) {
	var v struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, nil, fmt.Errorf("decode: %w", err)
	}
	switch v.V {
	case 0:
		var st sinkStateV1
		if err := json.Unmarshal(b, &st); err != nil {
			return 0, nil, fmt.Errorf("decode format 1: %w", err)
		}
		var out []string
		for _, p := range st.Pending {
			out = append(out, filepath.Join(s.dir, fmt.Sprintf("part-%d-%d.jsonl", st.Subtask, p.Part)))
		}
		return st.Subtask, out, nil
	case stateVersion:
		var st sinkState
		if err := json.Unmarshal(b, &st); err != nil {
			return 0, nil, fmt.Errorf("decode format %d: %w", stateVersion, err)
		}
		var out []string
		for _, p := range st.Pending {
			if !filepath.IsAbs(p.Path) {
				return 0, nil, fmt.Errorf("pending part %q is not an absolute path", p.Path)
			}
			out = append(out, p.Path)
		}
		return st.Subtask, out, nil
	default:
		return 0, nil, fmt.Errorf("format %d is newer than this Flow reads (1 and %d): restore with a newer Flow", v.V, stateVersion)
	}
}

// cleanup deletes the uncommitted parts that earlier attempts of this job
// and operator left in the output directory: parts of another run, of an
// old subtask this subtask takes over, that no restored checkpoint lists
// as pending. Those attempts are over; what they wrote after the restored
// checkpoint is written again. Parts of other jobs or operators, parts of
// an older Flow, and committed files are never touched. It runs once.
func (s *Sink) cleanup() error {
	if s.cleaned {
		return nil
	}
	s.cleaned = true
	if !s.ownsJob {
		return nil
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("file sink: clean up: %w", err)
	}
	keep := map[string]bool{}
	for _, p := range s.pending {
		keep[p.Path] = true
	}
	removed := false
	for _, e := range ents {
		p, ok := ParsePartName(e.Name())
		if !ok || p.Committed || p.Job != s.job || p.Operator != s.op || p.Run == s.run || p.Subtask%s.par != s.subtask {
			continue
		}
		committed := filepath.Join(s.dir, strings.TrimSuffix(strings.TrimPrefix(e.Name(), "."), ".inprogress"))
		if s.restored[committed] || keep[committed] {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("file sink: clean up a part of a failed attempt: %w", err)
		}
		removed = true
	}
	s.restored = nil
	if removed {
		return syncDir(s.dir)
	}
	return nil
}

// Finish implements api.Sink: flush, fsync and commit every part, the
// restored ones too (the end of a bounded input is committed without
// waiting for a checkpoint), then clean up.
func (s *Sink) Finish() error {
	if err := s.closePart(); err != nil {
		return err
	}
	if err := s.commit(func(pendingPart) bool { return true }); err != nil {
		return err
	}
	return s.cleanup()
}

// Close implements api.Sink. Uncommitted parts keep their hidden names.
func (s *Sink) Close() error {
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		return err
	}
	return nil
}
