package expression

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// ObjectProgram is a map expression whose result is an object literal with
// constant keys, such as `{"key": key, "double": value * 2}`, compiled so
// that the VM returns the values in a list instead of building a map:
// AppendJSON writes the object straight from them, byte for byte what
// encoding the map gave (keys sorted, the first of duplicate keys wins as
// in expr-lang's map literal,
// values encoded as encoding/json encodes them).
type ObjectProgram struct {
	*Program          // the values, as a list
	orig     *Program // the expression as written: errors come from it
	keys     []string // sorted, distinct
	idx      []int    // for each key, the index of its (last) value
	encKeys  []string // `"key":` encoded once
}

// CompileObject compiles src as an ObjectProgram, or returns nil when src
// is not an object literal with constant string keys (compile it with
// Compile then).
func CompileObject(src string) *ObjectProgram {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	m, ok := tree.Node.(*ast.MapNode)
	if !ok || len(m.Pairs) == 0 {
		return nil
	}
	var names []string
	for _, pn := range m.Pairs {
		pair, ok := pn.(*ast.PairNode)
		if !ok {
			return nil
		}
		k, ok := pair.Key.(*ast.StringNode)
		if !ok {
			return nil
		}
		names = append(names, k.Value)
	}
	orig, err := Compile(src)
	if err != nil {
		return nil
	}
	total := 0
	ast.Walk(&tree.Node, countVisitor{&total})
	pv := &rootToList{last: total - 1}
	vp, err := expr.Compile(src, expr.Env(map[string]any{}), expr.AllowUndefinedVariables(), expr.Patch(pv))
	if err != nil || !pv.done {
		return nil
	}
	if a, ok := vp.Node().(*ast.ArrayNode); !ok || len(a.Nodes) != len(names) {
		return nil
	}
	o := &ObjectProgram{orig: orig}
	o.Program = &Program{src: src, prog: vp, fields: orig.fields, loads: orig.loads, whole: orig.whole, usesTS: orig.usesTS, usesKey: orig.usesKey}
	last := map[string]int{}
	for i, n := range names {
		if _, dup := last[n]; !dup {
			last[n] = i // expr-lang keeps the first of duplicate keys
		}
	}
	o.keys = make([]string, 0, len(last))
	for n := range last {
		o.keys = append(o.keys, n)
	}
	sort.Strings(o.keys)
	for _, n := range o.keys {
		o.idx = append(o.idx, last[n])
		b, _ := json.Marshal(n)
		o.encKeys = append(o.encKeys, string(append(b, ':')))
	}
	return o
}

type countVisitor struct{ n *int }

func (c countVisitor) Visit(*ast.Node) { *c.n++ }

// rootToList replaces the root (the last node of the post-order walk), a
// map literal, by the list of its values.
type rootToList struct {
	seen, last int
	done       bool
}

func (r *rootToList) Visit(n *ast.Node) {
	defer func() { r.seen++ }()
	if r.seen != r.last {
		return
	}
	m, ok := (*n).(*ast.MapNode)
	if !ok {
		return
	}
	vals := make([]ast.Node, len(m.Pairs))
	for i, pn := range m.Pairs {
		vals[i] = pn.(*ast.PairNode).Value
	}
	ast.Patch(n, &ast.ArrayNode{Nodes: vals})
	r.done = true
}

// AppendEval evaluates the object for the record in env and appends its
// JSON to dst, exactly as AppendJSON of the original expression's result.
func (o *ObjectProgram) AppendEval(dst []byte, env *Env) ([]byte, error) {
	v, err := o.Program.Eval(env)
	list, ok := v.([]any)
	if err != nil || !ok || len(list) < len(o.idx) {
		return o.slow(dst, env)
	}
	start := len(dst)
	dst = append(dst, '{')
	for i, k := range o.encKeys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, k...)
		var ok bool
		if dst, ok = appendMarshal(dst, list[o.idx[i]]); !ok {
			return o.slow(dst[:start], env)
		}
	}
	return append(dst, '}'), nil
}

// slow is the original path, with the map operator's errors: the
// evaluation's, or the encoding's quoting the expression.
func (o *ObjectProgram) slow(dst []byte, env *Env) ([]byte, error) {
	v, err := o.orig.Eval(env)
	if err != nil {
		return dst, err
	}
	out, err := AppendJSON(dst, v)
	if err != nil {
		return dst, fmt.Errorf("expression %q: %w", o.src, err)
	}
	return out, nil
}

// appendMarshal appends v as encoding/json's Marshal writes it; ok is false
// when it cannot (NaN, infinities: Marshal's error is the slow path's).
func appendMarshal(dst []byte, v any) ([]byte, bool) {
	switch t := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case bool:
		return strconv.AppendBool(dst, t), true
	case int:
		return strconv.AppendInt(dst, int64(t), 10), true
	case int64:
		return strconv.AppendInt(dst, t, 10), true
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return dst, false
		}
		// encoding/json's float format: %f, or %e outside [1e-6, 1e21)
		// with a one-digit exponent kept short.
		abs := math.Abs(t)
		f := byte('f')
		if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
			f = 'e'
		}
		n := len(dst)
		dst = strconv.AppendFloat(dst, t, f, -1, 64)
		if f == 'e' {
			if m := len(dst) - n; m >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
				dst[len(dst)-2] = dst[len(dst)-1]
				dst = dst[:len(dst)-1]
			}
		}
		return dst, true
	case string:
		plain := true
		for i := 0; i < len(t); i++ {
			if c := t[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				plain = false
				break
			}
		}
		if plain {
			dst = append(dst, '"')
			dst = append(dst, t...)
			return append(dst, '"'), true
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return dst, false
	}
	return append(dst, b...), true
}
