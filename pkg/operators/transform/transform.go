package transform

import (
	"errors"
	"fmt"
	"sort"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
)

func init() {
	for _, t := range Types() {
		api.Default.MustRegister(t)
	}
}

// Types returns the map, filter and select operator types.
func Types() []api.OperatorType {
	return []api.OperatorType{
		{
			Name: "map", Kind: api.KindOperator,
			Doc: "Replaces each record's value with the JSON of an expression over its fields.",
			Fields: []api.Field{{Name: "expression", Type: api.TypeExpression, Required: true,
				Doc: "Expression over the record's fields (plus _ts, _key, _value); its result, as JSON, is the new value."}},
			Example: "- id: double\n  type: map\n  inputs: [gen]\n  config:\n    expression: '{\"key\": key, \"double\": value * 2}'\n",
			NewOperator: func(cfg api.Config) (api.Operator, error) {
				p, err := expression.Compile(cfg.String("expression"))
				if err != nil {
					return nil, fmt.Errorf("map: %w", err)
				}
				// An object literal is written without building a map.
				return &Map{prog: p, obj: expression.CompileObject(cfg.String("expression"))}, nil
			},
		},
		{
			Name: "filter", Kind: api.KindOperator,
			Doc: "Keeps the records for which a condition is true.",
			Fields: []api.Field{{Name: "condition", Type: api.TypeExpression, Required: true,
				Doc: "Boolean expression over the record's fields, such as `value > 500`."}},
			Example: "- id: big\n  type: filter\n  inputs: [gen]\n  config:\n    condition: value > 500\n",
			NewOperator: func(cfg api.Config) (api.Operator, error) {
				p, err := expression.CompileBool(cfg.String("condition"))
				if err != nil {
					return nil, fmt.Errorf("filter: %w", err)
				}
				return &Filter{prog: p}, nil
			},
		},
		{
			Name: "select", Kind: api.KindOperator,
			Doc: "Builds a JSON object from named expressions over the record's fields.",
			Fields: []api.Field{{Name: "fields", Type: api.TypeStringMap, Required: true,
				Doc: "Output field name -> expression.",
				Validate: func(v any) error {
					if len(v.(map[string]string)) == 0 {
						return errors.New("needs at least one output field")
					}
					return nil
				}}},
			Example: "- id: shape\n  type: select\n  inputs: [gen]\n  config:\n    fields:\n      user: key\n      big: value > 500\n",
			NewOperator: func(cfg api.Config) (api.Operator, error) {
				fields := cfg.StringMap("fields")
				if len(fields) == 0 {
					return nil, errors.New("select: fields needs at least one output field")
				}
				s := &Select{}
				names := make([]string, 0, len(fields))
				for n := range fields {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					p, err := expression.Compile(fields[n])
					if err != nil {
						return nil, fmt.Errorf("select: field %q: %w", n, err)
					}
					s.names = append(s.names, n)
					s.progs = append(s.progs, p)
					s.keys = append(s.keys, string(append(expression.AppendJSONString(nil, n), ':')))
				}
				return s, nil
			},
		},
	}
}

// base holds what every transform needs: a reusable Env and output buffer.
type base struct {
	env *expression.Env
	buf []byte
}

func (b *base) Open(api.Context) error {
	b.env = expression.NewEnv()
	b.buf = make([]byte, 0, 256)
	return nil
}

func (b *base) Finish(api.Collector) error { return nil }
func (b *base) Close() error               { return nil }

func (b *base) load(r api.Record) error {
	if b.env == nil {
		b.env = expression.NewEnv()
	}
	return b.env.Reset(r.Value, r.Timestamp, r.Key)
}

// Map is the map operator.
type Map struct {
	base
	prog *expression.Program
	obj  *expression.ObjectProgram // nil unless the expression is an object literal
}

// ProcessRecord implements api.Operator.
func (m *Map) ProcessRecord(r api.Record, out api.Collector) error {
	if err := m.load(r); err != nil {
		return err
	}
	if m.obj != nil {
		var err error
		if m.buf, err = m.obj.AppendEval(m.buf[:0], m.env); err != nil {
			return err
		}
		out.Collect(api.Record{Key: r.Key, Value: m.buf, Timestamp: r.Timestamp})
		return nil
	}
	v, err := m.prog.Eval(m.env)
	if err != nil {
		return err
	}
	m.buf, err = expression.AppendJSON(m.buf[:0], v)
	if err != nil {
		return fmt.Errorf("expression %q: %w", m.prog.Source(), err)
	}
	out.Collect(api.Record{Key: r.Key, Value: m.buf, Timestamp: r.Timestamp})
	return nil
}

// Filter is the filter operator.
type Filter struct {
	base
	prog *expression.Program
}

// ProcessRecord implements api.Operator.
func (f *Filter) ProcessRecord(r api.Record, out api.Collector) error {
	if err := f.load(r); err != nil {
		return err
	}
	ok, err := f.prog.EvalBool(f.env)
	if err != nil {
		return err
	}
	if ok {
		out.Collect(r)
	}
	return nil
}

// Select is the select operator.
type Select struct {
	base
	names []string
	keys  []string // the JSON of each name and a colon, encoded once
	progs []*expression.Program
}

// ProcessRecord implements api.Operator.
func (s *Select) ProcessRecord(r api.Record, out api.Collector) error {
	if err := s.load(r); err != nil {
		return err
	}
	b := append(s.buf[:0], '{')
	for i, p := range s.progs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, s.keys[i]...)
		// A plain field is copied from the record when its text is what
		// AppendJSON would write: nothing decoded, nothing allocated.
		var ok bool
		if b, ok = p.AppendFieldJSON(b, s.env); ok {
			continue
		}
		v, err := p.Eval(s.env)
		if err != nil {
			return fmt.Errorf("field %q: %w", s.names[i], err)
		}
		if b, err = expression.AppendJSON(b, v); err != nil {
			return fmt.Errorf("field %q: %w", s.names[i], err)
		}
	}
	s.buf = append(b, '}')
	out.Collect(api.Record{Key: r.Key, Value: s.buf, Timestamp: r.Timestamp})
	return nil
}
