package expression

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/flowrt/flow/pkg/api"
)

// Variables every record exposes in addition to its JSON fields.
const (
	VarTimestamp = "_ts"
	VarKey       = "_key"
)

// ErrNotBool is returned (wrapped) when a condition yields a non-bool value.
var ErrNotBool = errors.New("condition did not yield a bool")

// ErrNotNumber is returned (wrapped) when EvalNumber's expression yields a
// value that is not a number.
var ErrNotNumber = errors.New("value is not a number")

// Program is a compiled expression. It keeps a private VM so evaluation does
// not allocate its stack per call; do not share a Program between goroutines.
type Program struct {
	src    string
	prog   *vm.Program
	isBool bool
	vm     vm.VM
}

// Compile compiles an expression producing any value.
func Compile(src string) (*Program, error) {
	return compile(src, false)
}

// CompileBool compiles an expression that must produce a bool (a filter
// condition). Expressions whose type is known at compile time to be something
// else are rejected; others are checked at evaluation.
func CompileBool(src string) (*Program, error) {
	return compile(src, true)
}

func compile(src string, asBool bool) (*Program, error) {
	if src == "" {
		return nil, errors.New("expression is empty: write an expression over the record's fields, such as `value > 10`")
	}
	p, err := expr.Compile(src, expr.Env(map[string]any{}), expr.AllowUndefinedVariables())
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", src, err)
	}
	if asBool {
		// Reject types known at compile time; unknown (interface) types are
		// checked at evaluation.
		if t := p.Node().Type(); t != nil && t.Kind() != reflect.Bool && t.Kind() != reflect.Interface {
			return nil, fmt.Errorf("expression %q: %w (its type is %v): write a comparison such as `x > 0`", src, ErrNotBool, t)
		}
	}
	return &Program{src: src, prog: p, isBool: asBool}, nil
}

// Source returns the expression text.
func (p *Program) Source() string { return p.src }

// Eval evaluates the program against the record loaded into env.
func (p *Program) Eval(env *Env) (any, error) {
	out, err := p.vm.Run(p.prog, env.vars)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", p.src, err)
	}
	if p.isBool {
		if _, ok := out.(bool); !ok {
			return nil, fmt.Errorf("expression %q: %w (got %T)", p.src, ErrNotBool, out)
		}
	}
	return out, nil
}

// EvalBool evaluates a condition.
func (p *Program) EvalBool(env *Env) (bool, error) {
	out, err := p.vm.Run(p.prog, env.vars)
	if err != nil {
		return false, fmt.Errorf("expression %q: %w", p.src, err)
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("expression %q: %w (got %T)", p.src, ErrNotBool, out)
	}
	return b, nil
}

// EvalNumber runs the program and returns its result as a float64 (ints
// convert); any other result is an error wrapping ErrNotNumber that quotes
// the expression and the value.
func (p *Program) EvalNumber(env *Env) (float64, error) {
	out, err := p.vm.Run(p.prog, env.vars)
	if err != nil {
		return 0, fmt.Errorf("expression %q: %w", p.src, err)
	}
	switch x := out.(type) {
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case float64:
		return x, nil
	}
	return 0, fmt.Errorf("%w: %q gave %T (%v)", ErrNotNumber, p.src, out, out)
}

// Env holds one record's variables. Reset loads the next record.
type Env struct {
	vars map[string]any
	obj  map[string]any
}

// NewEnv returns an empty environment.
func NewEnv() *Env {
	return &Env{vars: make(map[string]any, 16), obj: make(map[string]any, 16)}
}

// Reset parses value (a JSON document) and exposes its top-level fields. A
// value that is not a JSON object exposes no fields (only `_ts`, `_key` and
// `_value`, the whole decoded value). ts == api.NoTimestamp makes `_ts` nil.
func (e *Env) Reset(value []byte, ts int64, key []byte) error {
	clear(e.vars)
	var whole any
	if len(value) > 0 && firstNonSpace(value) == '{' {
		clear(e.obj)
		if err := json.Unmarshal(value, &e.obj); err != nil {
			return fmt.Errorf("record value is not valid JSON: %w", err)
		}
		for k, v := range e.obj {
			e.vars[k] = normalize(v)
		}
		whole = e.obj
	} else if len(value) > 0 {
		if err := json.Unmarshal(value, &whole); err != nil {
			return fmt.Errorf("record value is not valid JSON: %w", err)
		}
		whole = normalize(whole)
	} else {
		return errors.New("record value is empty: expected a JSON document")
	}
	if _, ok := e.vars["_value"]; !ok {
		e.vars["_value"] = whole
	}
	if ts != api.NoTimestamp {
		e.vars[VarTimestamp] = int(ts)
	} else {
		e.vars[VarTimestamp] = nil
	}
	if key != nil {
		e.vars[VarKey] = string(key)
	} else {
		e.vars[VarKey] = nil
	}
	return nil
}

// Get returns a variable's value (for tests and diagnostics).
func (e *Env) Get(name string) (any, bool) {
	v, ok := e.vars[name]
	return v, ok
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}

const maxExactInt = 1 << 53

// normalize turns integral float64 values into ints, recursively.
func normalize(v any) any {
	switch t := v.(type) {
	case float64:
		if t == math.Trunc(t) && t > -maxExactInt && t < maxExactInt {
			return int(t)
		}
		return t
	case map[string]any:
		for k, x := range t {
			t[k] = normalize(x)
		}
		return t
	case []any:
		for i, x := range t {
			t[i] = normalize(x)
		}
		return t
	}
	return v
}

// AppendKey appends the canonical key bytes of v to dst: a string's bytes,
// a number's decimal text (integral floats without a fraction), true/false,
// and JSON for everything else (nil is "null").
func AppendKey(dst []byte, v any) []byte {
	switch t := v.(type) {
	case string:
		return append(dst, t...)
	case []byte:
		return append(dst, t...)
	case int:
		return strconv.AppendInt(dst, int64(t), 10)
	case int64:
		return strconv.AppendInt(dst, t, 10)
	case int32:
		return strconv.AppendInt(dst, int64(t), 10)
	case uint64:
		return strconv.AppendUint(dst, t, 10)
	case float64:
		if t == math.Trunc(t) && t > -maxExactInt && t < maxExactInt {
			return strconv.AppendInt(dst, int64(t), 10)
		}
		return strconv.AppendFloat(dst, t, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(dst, t)
	case nil:
		return append(dst, "null"...)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Appendf(dst, "%v", v)
	}
	return append(dst, b...)
}

// AppendJSON appends v encoded as JSON (used by map/select to build record
// values). Unlike encoding/json it renders integral floats without exponent.
func AppendJSON(dst []byte, v any) ([]byte, error) {
	switch t := v.(type) {
	case string:
		return appendJSONString(dst, t), nil
	case int:
		return strconv.AppendInt(dst, int64(t), 10), nil
	case int64:
		return strconv.AppendInt(dst, t, 10), nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return dst, fmt.Errorf("value %v cannot be encoded as JSON", t)
		}
		return strconv.AppendFloat(dst, t, 'f', -1, 64), nil
	case bool:
		return strconv.AppendBool(dst, t), nil
	case nil:
		return append(dst, "null"...), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("encode %T as JSON: %w", v, err)
	}
	return append(dst, b...), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal. Invalid UTF-8 bytes
// become U+FFFD, as encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r == '\n':
			dst = append(dst, '\\', 'n')
		case r == '\r':
			dst = append(dst, '\\', 'r')
		case r == '\t':
			dst = append(dst, '\\', 't')
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			dst = append(dst, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		default:
			dst = utf8.AppendRune(dst, r)
		}
	}
	return append(dst, '"')
}
