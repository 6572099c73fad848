package file

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flowrt/flow/pkg/api"
)

// SourceName is the registered type name of the source.
const SourceName = "file"

const maxBatch = 512

func init() {
	api.Default.MustRegister(SourceType())
	api.Default.MustRegister(SinkType())
}

// SourceType returns the file source type (registered in api.Default).
func SourceType() api.OperatorType {
	return api.OperatorType{
		Name: SourceName, Kind: api.KindSource,
		Doc: "Reads JSON lines from a file or from the *.json/*.jsonl files of a directory.",
		Fields: []api.Field{{Name: "path", Type: api.TypeString, Required: true, Validate: validatePath,
			Doc: "A file, or a directory whose *.json and *.jsonl files are read (spread across subtasks): an absolute path or file:// URL."}},
		Example: "- id: events\n  type: file\n  config:\n    path: /data/events\n",
		NewSource: func(cfg api.Config) (api.Source, error) {
			path, err := localPath(cfg.String("path"))
			if err != nil {
				return nil, fmt.Errorf("file source: path: %w", err)
			}
			return &Source{path: path}, nil
		},
	}
}

// LineError is a malformed input line; it is a record error (on_error skip
// drops it).
type LineError struct {
	File string
	Line int64
	Err  error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("file %s line %d: %v", e.File, e.Line, e.Err)
}
func (e *LineError) Unwrap() error     { return e.Err }
func (e *LineError) RecordError() bool { return true }

// Source is one file source subtask. It implements api.SplitSource: each
// file is a split {"v":1,"file":path,"offset":n}, the byte offset of its
// next line.
type Source struct {
	path string
	// queue holds this subtask's unfinished files in reading order;
	// queue[0] is the current one (open when f != nil, its Offset then
	// being where the file was opened).
	queue  []fileSplit
	opened bool

	f      *os.File
	r      *bufio.Reader
	offset int64 // of the next line in the current file
	line   int64 // lines read from the current file since it was opened
	long   []byte

	restored *position // a Position restored before Open
}

// fileSplit is one file and the offset to continue it at.
type fileSplit struct {
	V      int    `json:"v"`
	File   string `json:"file"`
	Offset int64  `json:"offset"`
}

const splitVersion = 1

// position is the pre-split position of a subtask: its current file (empty:
// every file was read) and the offset of the next line.
type position struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
}

// Open implements api.Source.
func (s *Source) Open(ctx api.Context) error {
	all, err := listFiles(s.path)
	if err != nil {
		return err
	}
	info := ctx.Info()
	s.queue = s.queue[:0]
	for i, f := range all {
		if i%max(info.Parallelism, 1) == info.SubtaskIndex {
			s.queue = append(s.queue, fileSplit{V: splitVersion, File: f})
		}
	}
	s.opened = true
	if p := s.restored; p != nil {
		s.restored = nil
		return s.restorePosition(p)
	}
	return nil
}

func listFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() && (strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".jsonl")) {
			out = append(out, filepath.Join(path, n))
		}
	}
	sort.Strings(out)
	return out, nil
}

// openFile opens queue[0] at its offset.
func (s *Source) openFile() error {
	sp := s.queue[0]
	f, err := os.Open(sp.File)
	if err != nil {
		return fmt.Errorf("file source: %w", err)
	}
	if sp.Offset > 0 {
		if _, err := f.Seek(sp.Offset, io.SeekStart); err != nil {
			f.Close()
			return fmt.Errorf("file source: seek %s to %d: %w", sp.File, sp.Offset, err)
		}
	}
	s.f, s.offset, s.line = f, sp.Offset, 0
	if s.r == nil {
		s.r = bufio.NewReaderSize(f, 64<<10)
	} else {
		s.r.Reset(f)
	}
	return nil
}

// closeFile closes the current file (if open) and keeps its progress in
// queue[0].
func (s *Source) closeFile() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	s.queue[0].Offset = s.offset
	return err
}

// Next implements api.Source.
func (s *Source) Next(out api.SourceOutput) (api.SourceStatus, error) {
	for n := 0; n < maxBatch; {
		if s.f == nil {
			if len(s.queue) == 0 {
				return api.SourceStatus{End: true}, nil
			}
			if err := s.openFile(); err != nil {
				return api.SourceStatus{}, err
			}
		}
		line, err := s.readLine()
		if err == io.EOF {
			s.f.Close()
			s.f = nil
			s.queue = s.queue[1:]
			continue
		}
		if err != nil {
			return api.SourceStatus{}, fmt.Errorf("file source: read %s: %w", s.queue[0].File, err)
		}
		trimmed := trimSpace(line)
		if len(trimmed) == 0 {
			continue
		}
		if !json.Valid(trimmed) {
			return api.SourceStatus{}, &LineError{File: s.queue[0].File, Line: s.line, Err: errors.New("not valid JSON")}
		}
		out.Collect(api.Record{Value: trimmed, Timestamp: api.NoTimestamp})
		n++
	}
	return api.SourceStatus{}, nil
}

// readLine returns the next line (without its newline) and advances the
// position past it. The final line may lack a newline.
func (s *Source) readLine() ([]byte, error) {
	b, err := s.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		s.long = append(s.long[:0], b...)
		for err == bufio.ErrBufferFull {
			b, err = s.r.ReadSlice('\n')
			s.long = append(s.long, b...)
		}
		b = s.long
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	if len(b) == 0 && err == io.EOF {
		return nil, io.EOF
	}
	s.offset += int64(len(b))
	s.line++
	return b, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// current returns the subtask's splits with the current file's progress.
func (s *Source) current() []fileSplit {
	out := append([]fileSplit(nil), s.queue...)
	if s.f != nil {
		out[0].Offset = s.offset
	}
	return out
}

// Splits implements api.SplitSource: the unread files, the current one at
// the offset of its next line.
func (s *Source) Splits() ([][]byte, error) {
	cur := s.current()
	out := make([][]byte, 0, len(cur))
	for _, sp := range cur {
		b, err := json.Marshal(sp)
		if err != nil {
			return nil, fmt.Errorf("file source: encode split: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// RestoreSplits implements api.SplitSource: the subtask reads exactly the
// given files, each from its offset, in the order given. The files must
// still exist.
func (s *Source) RestoreSplits(splits [][]byte) error {
	q := make([]fileSplit, 0, len(splits))
	for _, b := range splits {
		var sp fileSplit
		if err := json.Unmarshal(b, &sp); err != nil {
			return fmt.Errorf("file source: decode split %q: %w", b, err)
		}
		if sp.V != splitVersion {
			return fmt.Errorf("file source: split %q has format version %d; this release reads version %d", b, sp.V, splitVersion)
		}
		if sp.File == "" || sp.Offset < 0 {
			return fmt.Errorf("file source: split %q: want a file and a non-negative offset", b)
		}
		q = append(q, sp)
	}
	if err := s.Close(); err != nil {
		return err
	}
	s.queue = q
	return nil
}

// Position implements api.Source: the current file and offset (the
// format of snapshots taken before the source had splits; the runtime
// stores Splits instead).
func (s *Source) Position() ([]byte, error) {
	p := position{}
	if cur := s.current(); len(cur) > 0 {
		p.File, p.Offset = cur[0].File, cur[0].Offset
	}
	return json.Marshal(p)
}

// Restore implements api.Source: it continues at a Position taken at the
// same parallelism (before or after Open).
func (s *Source) Restore(b []byte) error {
	var p position
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("file source: restore position %q: %w", b, err)
	}
	if !s.opened {
		s.restored = &p
		return nil
	}
	if err := s.Close(); err != nil {
		return err
	}
	return s.restorePosition(&p)
}

// restorePosition drops the files before p's and sets p's offset (queue
// holds the subtask's files from Open).
func (s *Source) restorePosition(p *position) error {
	if p.File == "" {
		s.queue = s.queue[:0] // the position says every file was read
		return nil
	}
	for i, sp := range s.queue {
		if sp.File == p.File {
			s.queue = s.queue[i:]
			s.queue[0].Offset = p.Offset
			return nil
		}
	}
	return fmt.Errorf("file source: restore: file %s is not among this subtask's inputs under %s (restore with the parallelism the position was taken at)", p.File, s.path)
}

// Close implements api.Source.
func (s *Source) Close() error {
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		return err
	}
	return nil
}
