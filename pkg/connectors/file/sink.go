package file

import (
	"bufio"
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

// Sink is one file sink subtask.
type Sink struct {
	dir     string
	maxSize int64
	subtask int

	next    int // number of the next part file
	f       *os.File
	w       *bufio.Writer
	size    int64
	cur     int   // number of the in-progress part
	pending []int // closed, fsynced, not yet committed
}

// PartName is the committed name of part n of a subtask.
func PartName(subtask, n int) string { return fmt.Sprintf("part-%d-%d.jsonl", subtask, n) }

func inProgressName(subtask, n int) string { return "." + PartName(subtask, n) + ".inprogress" }

// Open implements api.Sink.
func (s *Sink) Open(ctx api.Context) error {
	s.subtask = ctx.Info().SubtaskIndex
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("file sink: create output directory: %w", err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	// Continue numbering after parts of earlier runs so nothing is overwritten.
	prefix := fmt.Sprintf("part-%d-", s.subtask)
	for _, e := range ents {
		name := strings.TrimSuffix(strings.TrimPrefix(e.Name(), "."), ".inprogress")
		if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ".jsonl") {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, prefix), ".jsonl")); err == nil && n >= s.next {
			s.next = n + 1
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
	s.pending = append(s.pending, s.cur)
	return nil
}

// commit renames pending parts to their final names and syncs the directory.
func (s *Sink) commit() error {
	for _, n := range s.pending {
		if err := os.Rename(filepath.Join(s.dir, inProgressName(s.subtask, n)), filepath.Join(s.dir, PartName(s.subtask, n))); err != nil {
			return fmt.Errorf("file sink: commit part %d: %w", n, err)
		}
	}
	s.pending = s.pending[:0]
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

// Finish implements api.Sink: flush, fsync and commit every part.
func (s *Sink) Finish() error {
	if err := s.closePart(); err != nil {
		return err
	}
	return s.commit()
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
