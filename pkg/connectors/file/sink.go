package file

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flowrt/flow/pkg/api"
)

// SinkName is the registered type name of the sink.
const SinkName = "file"

// SinkType returns the file sink type (registered in api.Default).
func SinkType() api.OperatorType {
	return api.OperatorType{
		Name: SinkName, Kind: api.KindSink,
		Doc: "Writes record values as JSON lines into part files part-<subtask>-<n>.jsonl of a directory.",
		Fields: []api.Field{
			{Name: "path", Type: api.TypeString, Required: true, Doc: "Output directory (created if missing)."},
			{Name: "max_file_size", Type: api.TypeInt, Default: int64(128 << 20), Validate: func(v any) error {
				if v.(int64) < 0 {
					return errors.New("must not be negative")
				}
				return nil
			}, Doc: "Roll to a new part file after this many bytes; 0 never rolls."},
		},
		Example: "- id: out\n  type: file\n  inputs: [gen]\n  config:\n    path: /data/out\n",
		NewSink: func(cfg api.Config) (api.Sink, error) {
			if cfg.String("path") == "" {
				return nil, errors.New("file sink: path is empty: set it to an output directory")
			}
			return &Sink{dir: cfg.String("path"), maxSize: cfg.Int("max_file_size")}, nil
		},
	}
}

// Sink is one file sink subtask. With checkpoints it is an exactly-once
// two-phase-commit sink (api.CheckpointedFunction, api.CheckpointListener):
// SnapshotState closes the in-progress part and records it, with every
// part still pending, in operator state; NotifyCheckpointComplete(n)
// commits the parts pending for checkpoints <= n; InitializeState after a
// restore commits the restored pending parts again (idempotently) and
// deletes what was written after the checkpoint.
type Sink struct {
	dir     string
	maxSize int64
	subtask int
	par     int

	next    int // number of the next part file
	f       *os.File
	w       *bufio.Writer
	size    int64
	cur     int           // number of the in-progress part
	pending []pendingPart // closed, fsynced, not yet committed

	state *api.OperatorListState[[]byte] // nil without operator state
}

// pendingPart is a closed part waiting for its commit. Checkpoint is the
// checkpoint whose snapshot covers it (0: none yet).
type pendingPart struct {
	Part       int   `json:"part"`
	Checkpoint int64 `json:"checkpoint"`
}

// sinkState is one subtask's element of the sink's union list state.
type sinkState struct {
	Subtask int           `json:"subtask"`
	Next    int           `json:"next"` // parts numbered >= Next were started after the checkpoint
	Pending []pendingPart `json:"pending"`
}

// stateName is the sink's operator state (a union list: after rescaling
// every subtask sees every old subtask's parts and handles those of old
// subtask j when j mod parallelism is its index).
const stateName = "file-sink-parts-v1"

// PartName is the committed name of part n of a subtask.
func PartName(subtask, n int) string { return fmt.Sprintf("part-%d-%d.jsonl", subtask, n) }

func inProgressName(subtask, n int) string { return "." + PartName(subtask, n) + ".inprogress" }

// parsePart parses a committed or in-progress part file name.
func parsePart(name string) (subtask, n int, inProgress, ok bool) {
	base := name
	if strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".inprogress") {
		base, inProgress = strings.TrimSuffix(strings.TrimPrefix(name, "."), ".inprogress"), true
	}
	rest, found := strings.CutPrefix(base, "part-")
	if !found {
		return 0, 0, false, false
	}
	rest, found = strings.CutSuffix(rest, ".jsonl")
	if !found {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(rest, "-")
	if !found {
		return 0, 0, false, false
	}
	sub, err1 := strconv.Atoi(a)
	num, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || sub < 0 || num < 0 {
		return 0, 0, false, false
	}
	return sub, num, inProgress, true
}

// Open implements api.Sink.
func (s *Sink) Open(ctx api.Context) error {
	s.subtask, s.par = ctx.Info().SubtaskIndex, max(ctx.Info().Parallelism, 1)
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("file sink: create output directory: %w", err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	// Continue numbering after parts of earlier runs so nothing is overwritten.
	for _, e := range ents {
		if sub, n, _, ok := parsePart(e.Name()); ok && sub == s.subtask && n >= s.next {
			s.next = n + 1
		}
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

func (s *Sink) openPart() error {
	s.cur = s.next
	s.next++
	f, err := os.OpenFile(filepath.Join(s.dir, inProgressName(s.subtask, s.cur)), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.f, s.size = f, 0
	if s.w == nil {
		s.w = bufio.NewWriterSize(f, 64<<10)
	} else {
		s.w.Reset(f)
	}
	return nil
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
	s.pending = append(s.pending, pendingPart{Part: s.cur})
	return nil
}

// commitPart renames a pending part of a subtask to its final name. It is
// idempotent: a part already committed is fine.
func (s *Sink) commitPart(subtask, n int) error {
	from, to := filepath.Join(s.dir, inProgressName(subtask, n)), filepath.Join(s.dir, PartName(subtask, n))
	err := os.Rename(from, to)
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(to); serr == nil {
			return nil // committed before
		}
		return fmt.Errorf("file sink: commit part %s: neither the pending file %s nor the committed file exists (the output directory lost data: was it modified outside the job?)", to, from)
	}
	return fmt.Errorf("file sink: commit part %d of subtask %d: %w", n, subtask, err)
}

// commit commits the pending parts for which keep returns true and syncs
// the directory.
func (s *Sink) commit(keep func(pendingPart) bool) error {
	rest := s.pending[:0]
	committed := false
	for _, p := range s.pending {
		if !keep(p) {
			rest = append(rest, p)
			continue
		}
		if err := s.commitPart(s.subtask, p.Part); err != nil {
			return err
		}
		committed = true
	}
	s.pending = rest
	if !committed {
		return nil
	}
	return s.syncDir()
}

func (s *Sink) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("file sink: fsync directory %s: %w", s.dir, err)
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
	if s.state == nil {
		return nil
	}
	b, err := json.Marshal(sinkState{Subtask: s.subtask, Next: s.next, Pending: s.pending})
	if err != nil {
		return fmt.Errorf("file sink: encode state: %w", err)
	}
	return s.state.Update([][]byte{b})
}

// NotifyCheckpointComplete implements api.CheckpointListener: commit the
// parts pending for checkpoints up to id.
func (s *Sink) NotifyCheckpointComplete(id int64) error {
	return s.commit(func(p pendingPart) bool { return p.Checkpoint != 0 && p.Checkpoint <= id })
}

// NotifyCheckpointAborted implements api.CheckpointListener. The parts of
// an aborted checkpoint stay pending: the next completed checkpoint, which
// records them too, commits them.
func (s *Sink) NotifyCheckpointAborted(int64) error { return nil }

// InitializeState implements api.CheckpointedFunction. After a restore it
// commits the parts the checkpoint recorded as pending and deletes the
// parts written after the checkpoint (in progress, pending, or committed at
// the end of input of the failed attempt): their records are replayed.
func (s *Sink) InitializeState(restored bool) error {
	if !restored || s.state == nil {
		return nil
	}
	elems, err := s.state.Get()
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	old := map[int]sinkState{}
	for _, b := range elems {
		var st sinkState
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("file sink: decode restored state: %w", err)
		}
		old[st.Subtask] = st
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	changed := false
	for sub, st := range old {
		if sub%s.par != s.subtask {
			continue
		}
		keep := map[int]bool{}
		for _, p := range st.Pending {
			keep[p.Part] = true
			if err := s.commitPart(sub, p.Part); err != nil {
				return err
			}
			changed = true
		}
		for _, e := range ents {
			esub, n, inProgress, ok := parsePart(e.Name())
			if !ok || esub != sub || keep[n] || (!inProgress && n < st.Next) {
				continue
			}
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("file sink: remove %s written after the restored checkpoint: %w", e.Name(), err)
			}
			changed = true
		}
		if sub == s.subtask {
			s.next = max(s.next, st.Next)
		}
	}
	if err := s.state.Update(nil); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	if changed {
		return s.syncDir()
	}
	return nil
}

// Finish implements api.Sink: flush, fsync and commit every part (the end
// of a bounded input is committed without waiting for a checkpoint).
func (s *Sink) Finish() error {
	if err := s.closePart(); err != nil {
		return err
	}
	return s.commit(func(pendingPart) bool { return true })
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
