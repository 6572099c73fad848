package lookup

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
)

// Name is the registered type name.
const Name = "lookup"

// maxLine bounds one line of the side table.
const maxLine = 16 << 20

// Errors of loading the side table (wrapped with the file and line).
var (
	// ErrNotJSON: a line is not a JSON object.
	ErrNotJSON = errors.New("is not a JSON object: write one JSON object per line")
	// ErrNoKey: a row's tableKey is null or absent.
	ErrNoKey = errors.New("has no table key")
)

func init() { api.Default.MustRegister(Type()) }

// Type returns the lookup operator type.
func Type() api.OperatorType {
	return api.OperatorType{
		Name: Name, Kind: api.KindOperator,
		Doc: "Joins each record with the row of a side table (a JSON Lines file loaded when the operator opens) that has its key: emits {\"left\": record, \"right\": row}.",
		Fields: []api.Field{
			{Name: "path", Type: api.TypeString, Required: true,
				Doc: "The side table: a JSON Lines file (one object per line) readable by every TaskManager; relative to its working directory."},
			{Name: "key", Type: api.TypeExpression, Required: true,
				Doc: "Expression over the stream's records giving the lookup key, e.g. `auction % 10000`."},
			{Name: "tableKey", Type: api.TypeExpression, Default: "key",
				Doc: "Expression over the table's rows giving their key."},
			{Name: "kind", Type: api.TypeString, Default: "inner", Enum: []string{"inner", "left"},
				Doc: "inner drops records without a row; left emits them with \"right\": null."},
		},
		Example:     "- id: enriched\n  type: lookup\n  inputs: [bids]\n  config:\n    path: /data/side_input.jsonl\n    key: auction % 10000\n",
		NewOperator: New,
	}
}

// New builds the operator from a decoded config.
func New(cfg api.Config) (api.Operator, error) {
	o := &Operator{path: cfg.String("path"), left: cfg.String("kind") == "left"}
	if o.path == "" {
		return nil, errors.New("lookup: path is empty: name the side table's JSON Lines file")
	}
	var err error
	if o.key, err = expression.Compile(cfg.String("key")); err != nil {
		return nil, fmt.Errorf("lookup: key: %w", err)
	}
	tk := cfg.String("tableKey")
	if tk == "" {
		tk = "key"
	}
	if o.tableKey, err = expression.Compile(tk); err != nil {
		return nil, fmt.Errorf("lookup: tableKey: %w", err)
	}
	return o, nil
}

// Operator is the lookup operator.
type Operator struct {
	path          string
	left          bool
	key, tableKey *expression.Program

	table map[string][]byte
	env   *expression.Env
	kbuf  []byte
	buf   []byte
}

// Open loads the side table.
func (o *Operator) Open(api.Context) error {
	o.env = expression.NewEnv()
	o.buf = make([]byte, 0, 256)
	t, err := Load(o.path, o.tableKey)
	o.table = t
	return err
}

// Load reads a JSON Lines side table into a map from each row's key text
// (tableKey) to the row.
func Load(path string, tableKey *expression.Program) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lookup: side table: %w: check the path (relative paths are relative to the TaskManager's working directory)", err)
	}
	defer f.Close()
	table := map[string][]byte{}
	env := expression.NewEnv()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var key []byte
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if b[0] != '{' || !json.Valid(b) {
			return nil, fmt.Errorf("lookup: side table %s line %d %w", path, line, ErrNotJSON)
		}
		row := bytes.Clone(b)
		if err := env.Reset(row, api.NoTimestamp, nil); err != nil {
			return nil, fmt.Errorf("lookup: side table %s line %d: %w", path, line, err)
		}
		key, err = tableKey.EvalKey(key[:0], env)
		if err != nil {
			return nil, fmt.Errorf("lookup: side table %s line %d %w: %w", path, line, ErrNoKey, err)
		}
		table[string(key)] = row
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("lookup: side table %s: read: %w", path, err)
	}
	return table, nil
}

// ProcessRecord emits r joined with its row.
func (o *Operator) ProcessRecord(r api.Record, out api.Collector) error {
	if err := o.env.Reset(r.Value, r.Timestamp, r.Key); err != nil {
		return err
	}
	k, err := o.key.EvalKey(o.kbuf[:0], o.env)
	o.kbuf = k
	if err != nil {
		return err
	}
	row, ok := o.table[string(k)]
	if !ok && !o.left {
		return nil
	}
	b := append(o.buf[:0], `{"left":`...)
	b = append(b, r.Value...)
	b = append(b, `,"right":`...)
	if ok {
		b = append(b, row...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, '}')
	o.buf = b
	out.Collect(api.Record{Key: r.Key, Value: b, Timestamp: r.Timestamp})
	return nil
}

// Finish implements api.Operator.
func (o *Operator) Finish(api.Collector) error { return nil }

// Close implements api.Operator.
func (o *Operator) Close() error { return nil }
