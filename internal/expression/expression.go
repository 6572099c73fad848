package expression

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
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

// ErrMissingField is wrapped by an evaluation error when a record field the
// expression reads is absent from the record or null (the usual cause of
// "invalid operation: <nil> > int"); the message names the fields.
var ErrMissingField = errors.New("field is missing in the record")

// ErrNullKey is wrapped by EvalKey's error when the key expression gives
// null for a record (a missing field, a JSON null, or an expression that
// gives nil): records are never keyed under a silent "null" key.
var ErrNullKey = errors.New("the key is null")

// Program is a compiled expression. It keeps a private VM so evaluation does
// not allocate its stack per call; do not share a Program between goroutines.
type Program struct {
	src    string
	prog   *vm.Program
	isBool bool
	vm     vm.VM
	// fields are the top-level record fields the expression reads, in
	// order of first appearance (from the AST, at compile time); errors
	// name those a record lacks.
	fields []string
	// loads are the top-level fields loaded before a run: fields, plus
	// let-bound names (a field of that name may be read outside the let).
	loads []string
	// whole: the expression reads the whole record (`_value` or `$env`),
	// so the record is decoded whole; usesTS, usesKey: it reads `_ts`,
	// `_key`.
	whole, usesTS, usesKey bool
	// path: the expression is a chain of constant member accesses on a
	// field (path.go), read from the record's bytes when it can be.
	path []string
	// the Env and Reset generation last loaded for this program
	loadedEnv *Env
	loadedGen uint64
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
	prog := &Program{src: src, prog: p, isBool: asBool, fields: recordFields(p.Node()), path: memberPath(p.Node())}
	var v fieldVisitor
	root := p.Node()
	ast.Walk(&root, &v)
	prog.loads = slices.Clone(prog.fields)
	for _, name := range v.idents {
		switch name {
		case "_value", "$env":
			prog.whole = true
		case VarTimestamp:
			prog.usesTS = true
		case VarKey:
			prog.usesKey = true
		}
	}
	for _, name := range v.declared {
		if !slices.Contains(prog.loads, name) && name != VarTimestamp && name != VarKey {
			prog.loads = append(prog.loads, name)
		}
	}
	return prog, nil
}

// recordFields lists the top-level record fields an expression reads: its
// identifiers, except function names, let-bound variables and the
// variables every record exposes (_ts, _key, _value, $env).
func recordFields(root ast.Node) []string {
	var v fieldVisitor
	ast.Walk(&root, &v)
	var out []string
	for _, name := range v.idents {
		switch {
		case name == VarTimestamp, name == VarKey, name == "_value", name == "$env",
			slices.Contains(v.declared, name), slices.Contains(v.callees, name), slices.Contains(out, name):
			continue
		}
		out = append(out, name)
	}
	return out
}

type fieldVisitor struct {
	idents, declared, callees []string
}

func (v *fieldVisitor) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		v.idents = append(v.idents, x.Value)
	case *ast.VariableDeclaratorNode:
		v.declared = append(v.declared, x.Name)
	case *ast.CallNode:
		if id, ok := x.Callee.(*ast.IdentifierNode); ok {
			v.callees = append(v.callees, id.Value)
		}
	}
}

// Source returns the expression text.
func (p *Program) Source() string { return p.src }

// Fields returns the top-level record fields the expression reads, in order
// of first appearance.
func (p *Program) Fields() []string { return slices.Clone(p.fields) }

// Eval evaluates the program against the record loaded into env.
func (p *Program) Eval(env *Env) (any, error) {
	out, err := p.run(env)
	if err != nil {
		return nil, p.runError(env, err)
	}
	if p.isBool {
		if _, ok := out.(bool); !ok {
			return nil, p.resultError(env, fmt.Errorf("%w (got %T)", ErrNotBool, out))
		}
	}
	return out, nil
}

// errLoad marks an error of loading the record (not of the expression),
// which the Eval methods return as it is.
type errLoad struct{ err error }

func (e errLoad) Error() string { return e.err.Error() }
func (e errLoad) Unwrap() error { return e.err }

// run loads what p reads and runs it: a path program from the record's
// bytes when they settle it, the VM otherwise.
func (p *Program) run(env *Env) (any, error) {
	if v, ok := p.evalPath(env); ok {
		return v, nil
	}
	if err := env.load(p); err != nil {
		return nil, errLoad{err}
	}
	return p.vm.Run(p.prog, env.vars)
}

// EvalBool evaluates a condition.
func (p *Program) EvalBool(env *Env) (bool, error) {
	out, err := p.run(env)
	if err != nil {
		return false, p.runError(env, err)
	}
	b, ok := out.(bool)
	if !ok {
		return false, p.resultError(env, fmt.Errorf("%w (got %T)", ErrNotBool, out))
	}
	return b, nil
}

// EvalNumber runs the program and returns its result as a float64 (ints
// convert); any other result is an error wrapping ErrNotNumber that quotes
// the expression and the value.
func (p *Program) EvalNumber(env *Env) (float64, error) {
	out, err := p.run(env)
	if err != nil {
		return 0, p.runError(env, err)
	}
	switch x := out.(type) {
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case float64:
		return x, nil
	}
	if m := p.missing(env); m != nil {
		return 0, fmt.Errorf("expression %q: %w: %w (gave %T)", p.src, m, ErrNotNumber, out)
	}
	return 0, fmt.Errorf("%w: %q gave %T (%v)", ErrNotNumber, p.src, out, out)
}

// EvalKey evaluates a keyBy expression and appends the key bytes of its
// result to dst (as AppendKey). A null result is an error wrapping
// ErrNullKey (and ErrMissingField when a field the expression reads is
// absent or null): a record without a key is a record error, never keyed
// under "null".
func (p *Program) EvalKey(dst []byte, env *Env) ([]byte, error) {
	v, err := p.run(env)
	if err != nil {
		return dst, p.runError(env, err)
	}
	if v == nil {
		hint := p.src + ` ?? "none"`
		if _, ok := p.Field(); !ok {
			hint = "(" + p.src + `) ?? "none"`
		}
		if m := p.missing(env); m != nil {
			return dst, fmt.Errorf("expression %q: %w, so %w: key such records by a default, such as %s, or drop them with onError: skip", p.src, m, ErrNullKey, hint)
		}
		return dst, fmt.Errorf("expression %q: %w: key such records by a default, such as %s, or drop them with onError: skip", p.src, ErrNullKey, hint)
	}
	return AppendKey(dst, v), nil
}

// runError turns an error of the VM into a one-line error that quotes the
// expression and names the fields it reads that the record lacks.
func (p *Program) runError(env *Env, err error) error {
	if le, ok := err.(errLoad); ok {
		return le.err
	}
	re := &runError{err: err}
	if m := p.missing(env); m != nil {
		return fmt.Errorf("expression %q: %w: %w", p.src, m, re)
	}
	return fmt.Errorf("expression %q: %w", p.src, re)
}

// resultError reports a result of the wrong type, naming missing fields.
func (p *Program) resultError(env *Env, err error) error {
	if m := p.missing(env); m != nil {
		return fmt.Errorf("expression %q: %w: %w", p.src, m, err)
	}
	return fmt.Errorf("expression %q: %w", p.src, err)
}

// runError is an expr-lang run-time error shown on one line: its message and
// position, without the multi-line source snippet.
type runError struct{ err error }

func (e *runError) Error() string {
	var fe *file.Error
	if errors.As(e.err, &fe) && fe.Message != "" {
		if fe.Line > 0 {
			return fmt.Sprintf("%s (%d:%d)", fe.Message, fe.Line, fe.Column+1)
		}
		return fe.Message
	}
	s := e.err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func (e *runError) Unwrap() error { return e.err }

// missing returns an error naming the fields of p that the record in env
// lacks or holds null in, or nil when it has them all. Called on error
// paths only (it allocates).
func (p *Program) missing(env *Env) error {
	_ = env.decodeAll() // error path: the message lists the record's fields
	var absent, null []string
	for _, f := range p.fields {
		v, ok := env.vars[f]
		switch {
		case !ok:
			absent = append(absent, f)
		case v == nil:
			null = append(null, f)
		}
	}
	if absent == nil && null == nil {
		return nil
	}
	var b strings.Builder
	if absent != nil {
		b.WriteString(quoteFields(absent))
		b.WriteString(pick(len(absent) == 1, " is", " are"))
		b.WriteString(" missing")
	}
	if null != nil {
		if absent != nil {
			b.WriteString(" and ")
		}
		b.WriteString(quoteFields(null))
		b.WriteString(pick(len(null) == 1, " is", " are"))
		b.WriteString(" null")
	}
	b.WriteString(" in the record (")
	b.WriteString(env.describeFields())
	b.WriteString(")")
	return &missingError{msg: b.String()}
}

// missingError is the message of missing(); it matches ErrMissingField.
type missingError struct{ msg string }

func (e *missingError) Error() string        { return e.msg }
func (e *missingError) Is(target error) bool { return target == ErrMissingField }

func quoteFields(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return pick(len(names) == 1, "field ", "fields ") + strings.Join(q, ", ")
}

func pick(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}

// maxListedFields bounds the record fields an error message lists.
const maxListedFields = 12

// Env holds one record's variables. Reset loads the next record.
//
// Loading is lazy: Reset checks the record's JSON in one pass that builds
// nothing (indexObject) and remembers where each top-level field's value
// is; a Program then decodes only the fields it reads (its compile-time
// list) before it runs. A program that reads the whole record (`_value`,
// `$env`), a record that is not an object, and a record the scanner cannot
// index exactly (invalid JSON, escaped keys, huge numbers) take the full
// decode, once per record, exactly as before. Duplicate keys resolve as
// encoding/json resolves them: the last occurrence wins.
type Env struct {
	vars     map[string]any
	obj      map[string]any
	isObject bool // the loaded value is a JSON object

	raw     []byte   // the record's value (not copied: valid until the next Reset)
	members []member // its top-level members, when indexed
	sub     []member // scratch: the members of a nested object (rawPath)
	full    bool     // vars holds every field (the record was decoded whole)
	ts      int64
	key     []byte
	gen     uint64 // counts Resets; a Program remembers the last it loaded
}

// NewEnv returns an empty environment.
func NewEnv() *Env {
	return &Env{vars: make(map[string]any, 16), obj: make(map[string]any, 16), members: make([]member, 0, 16)}
}

// Reset checks value (a JSON document) and exposes its top-level fields. A
// value that is not a JSON object exposes no fields (only `_ts`, `_key` and
// `_value`, the whole decoded value). ts == api.NoTimestamp makes `_ts` nil.
// The Env keeps value, not a copy: value must not change until the next
// Reset (records handed to operators satisfy this).
func (e *Env) Reset(value []byte, ts int64, key []byte) error {
	// vars keeps the previous record's fields: every program loads (sets
	// or deletes) the fields it reads before it runs, so stale entries are
	// never seen; a whole decode clears vars first.
	if e.full {
		clear(e.vars)
	}
	e.gen++
	e.raw, e.ts, e.key, e.full = value, ts, key, false
	if len(value) == 0 {
		return errors.New("record value is empty: expected a JSON document")
	}
	var ok bool
	e.members, ok = indexObject(e.members[:0], value)
	if ok {
		e.isObject = true
		return nil
	}
	return e.decodeAll()
}

// decodeAll decodes the whole record into vars (the path every record took
// before lazy loading), setting `_value`, `_ts` and `_key` too.
func (e *Env) decodeAll() error {
	if e.full {
		return nil
	}
	value := e.raw
	clear(e.vars)
	var whole any
	e.isObject = firstNonSpace(value) == '{'
	if e.isObject {
		clear(e.obj)
		if err := json.Unmarshal(value, &e.obj); err != nil {
			return fmt.Errorf("record value is not valid JSON: %w", err)
		}
		for k, v := range e.obj {
			e.vars[k] = normalize(v)
		}
		whole = e.obj
	} else {
		if err := json.Unmarshal(value, &whole); err != nil {
			return fmt.Errorf("record value is not valid JSON: %w", err)
		}
		whole = normalize(whole)
	}
	e.members = e.members[:0]
	if _, ok := e.vars["_value"]; !ok {
		e.vars["_value"] = whole
	}
	e.setSpecial(true, true)
	e.full = true
	return nil
}

// setSpecial sets `_ts` and `_key` (either or both).
func (e *Env) setSpecial(ts, key bool) {
	if ts {
		if e.ts != api.NoTimestamp {
			e.vars[VarTimestamp] = boxInt(int(e.ts))
		} else {
			e.vars[VarTimestamp] = nil
		}
	}
	if key {
		if e.key != nil {
			e.vars[VarKey] = string(e.key)
		} else {
			e.vars[VarKey] = nil
		}
	}
}

// loadField puts one top-level field into vars (absent when the record
// lacks it). The last occurrence of a duplicated key wins.
func (e *Env) loadField(name string) {
	for i := len(e.members) - 1; i >= 0; i-- {
		m := e.members[i]
		if string(e.raw[m.ks:m.ke]) == name {
			e.vars[name] = decodeValue(e.raw[m.vs:m.ve])
			return
		}
	}
	delete(e.vars, name)
}

// load makes the variables p reads available.
func (e *Env) load(p *Program) error {
	if p.loadedEnv == e && p.loadedGen == e.gen {
		return nil
	}
	if e.full {
		// everything is there
	} else if p.whole {
		if err := e.decodeAll(); err != nil {
			return err
		}
	} else {
		for _, f := range p.loads {
			e.loadField(f)
		}
		e.setSpecial(p.usesTS, p.usesKey)
	}
	p.loadedEnv, p.loadedGen = e, e.gen
	return nil
}

// describeFields says which top-level fields the loaded record has, for
// error messages: "its fields are a, b, c", sorted and bounded.
func (e *Env) describeFields() string {
	if !e.isObject {
		return "the record is not a JSON object"
	}
	names := make([]string, 0, len(e.obj))
	for k := range e.obj {
		names = append(names, k)
	}
	if len(names) == 0 {
		return "the record is an empty object"
	}
	sort.Strings(names)
	more := ""
	if len(names) > maxListedFields {
		more = fmt.Sprintf(" and %d more", len(names)-maxListedFields)
		names = names[:maxListedFields]
	}
	return "its fields are " + strings.Join(names, ", ") + more
}

// Get returns a variable's value (for tests and diagnostics); it decodes
// the whole record.
func (e *Env) Get(name string) (any, bool) {
	if err := e.decodeAll(); err != nil {
		return nil, false
	}
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

// AppendJSONString appends s as a JSON string literal, as AppendJSON does
// for a string (without boxing it).
func AppendJSONString(dst []byte, s string) []byte { return appendJSONString(dst, s) }

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
