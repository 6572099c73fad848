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
		Fields: []api.Field{{Name: "path", Type: api.TypeString, Required: true,
			Doc: "A file, or a directory whose *.json and *.jsonl files are read (spread across subtasks)."}},
		Example: "- id: events\n  type: file\n  config:\n    path: /data/events\n",
		NewSource: func(cfg api.Config) (api.Source, error) {
			if cfg.String("path") == "" {
				return nil, errors.New("file source: path is empty: set it to a file or directory")
			}
			return &Source{path: cfg.String("path")}, nil
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

// Source is one file source subtask.
type Source struct {
	path  string
	files []string // this subtask's files

	idx    int // current file in files
	f      *os.File
	r      *bufio.Reader
	offset int64 // of the next line in the current file
	line   int64 // lines read from the current file
	long   []byte

	restored *position
}

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
	for i, f := range all {
		if i%max(info.Parallelism, 1) == info.SubtaskIndex {
			s.files = append(s.files, f)
		}
	}
	if p := s.restored; p != nil && p.File == "" {
		s.idx = len(s.files) // the position says every file was read
	} else if p != nil {
		i := sort.SearchStrings(s.files, p.File)
		if i == len(s.files) || s.files[i] != p.File {
			return fmt.Errorf("file source: restore: file %s is not among this subtask's inputs under %s", p.File, s.path)
		}
		s.idx = i
		if err := s.openFile(p.Offset); err != nil {
			return err
		}
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

func (s *Source) openFile(offset int64) error {
	f, err := os.Open(s.files[s.idx])
	if err != nil {
		return fmt.Errorf("file source: %w", err)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return fmt.Errorf("file source: seek %s to %d: %w", s.files[s.idx], offset, err)
		}
	}
	s.f, s.offset, s.line = f, offset, 0
	if s.r == nil {
		s.r = bufio.NewReaderSize(f, 64<<10)
	} else {
		s.r.Reset(f)
	}
	return nil
}

// Next implements api.Source.
func (s *Source) Next(out api.SourceOutput) (api.SourceStatus, error) {
	for n := 0; n < maxBatch; {
		if s.f == nil {
			if s.idx >= len(s.files) {
				return api.SourceStatus{End: true}, nil
			}
			if err := s.openFile(0); err != nil {
				return api.SourceStatus{}, err
			}
		}
		line, err := s.readLine()
		if err == io.EOF {
			s.f.Close()
			s.f = nil
			s.idx++
			continue
		}
		if err != nil {
			return api.SourceStatus{}, fmt.Errorf("file source: read %s: %w", s.files[s.idx], err)
		}
		trimmed := trimSpace(line)
		if len(trimmed) == 0 {
			continue
		}
		if !json.Valid(trimmed) {
			return api.SourceStatus{}, &LineError{File: s.files[s.idx], Line: s.line, Err: errors.New("not valid JSON")}
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

// Position implements api.Source.
func (s *Source) Position() ([]byte, error) {
	p := position{}
	if s.idx < len(s.files) {
		p.File = s.files[s.idx]
		if s.f != nil {
			p.Offset = s.offset
		}
	}
	return json.Marshal(p)
}

// Restore implements api.Source (before Open).
func (s *Source) Restore(b []byte) error {
	var p position
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("file source: restore position %q: %w", b, err)
	}
	s.restored = &p
	return nil
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
