package expression

import (
	"github.com/expr-lang/expr/ast"
)

// A path program is a chain of constant member accesses on a record field,
// such as `left.auction` or `right["id"]` (the shape joins' outputs are read
// with). It is evaluated by finding the value in the record's bytes, one
// nested object at a time, and decoding only that value; anything the scan
// cannot settle exactly (a step that is not an object, a missing member,
// a record decoded whole) takes the ordinary path, so results and errors
// are those of the VM.

// memberPath returns the field and member names of a path program's root
// node (nil when it is another shape).
func memberPath(root ast.Node) []string {
	var rev []string
	n := root
	for {
		switch x := n.(type) {
		case *ast.MemberNode:
			if x.Optional || x.Method {
				return nil
			}
			s, ok := x.Property.(*ast.StringNode)
			if !ok {
				return nil
			}
			rev = append(rev, s.Value)
			n = x.Node
			continue
		case *ast.IdentifierNode:
			switch x.Value {
			case VarTimestamp, VarKey, "_value", "$env":
				return nil
			}
			if len(rev) == 0 {
				return nil // a plain field: Field's fast paths
			}
			path := make([]string, 0, len(rev)+1)
			path = append(path, x.Value)
			for i := len(rev) - 1; i >= 0; i-- {
				path = append(path, rev[i])
			}
			return path
		}
		return nil
	}
}

// Path returns the field and member names of a path program such as
// `left.auction` (["left", "auction"]), or false for any other shape.
func (p *Program) Path() ([]string, bool) {
	if p.path == nil {
		return nil, false
	}
	return append([]string(nil), p.path...), true
}

// rawPath returns the bytes of the value at path in the record env holds,
// or nil when the scan cannot find it exactly (the record was decoded
// whole, a step is missing or not an object). The last of duplicate
// names counts at every level, as encoding/json decodes them.
func (e *Env) rawPath(path []string) []byte {
	if e.full {
		return nil
	}
	var v []byte
	for i := len(e.members) - 1; i >= 0; i-- {
		m := e.members[i]
		if string(e.raw[m.ks:m.ke]) == path[0] {
			v = e.raw[m.vs:m.ve]
			break
		}
	}
	for _, name := range path[1:] {
		if v == nil || v[0] != '{' {
			return nil
		}
		var ok bool
		e.sub, ok = indexObject(e.sub[:0], v)
		if !ok {
			return nil
		}
		var next []byte
		for i := len(e.sub) - 1; i >= 0; i-- {
			m := e.sub[i]
			if string(v[m.ks:m.ke]) == name {
				next = v[m.vs:m.ve]
				break
			}
		}
		v = next
	}
	return v
}

// evalPath is a path program's value read from the record's bytes, or
// false when the VM must evaluate it.
func (p *Program) evalPath(env *Env) (any, bool) {
	if p.path == nil {
		return nil, false
	}
	v := env.rawPath(p.path)
	if v == nil {
		return nil, false
	}
	return decodeValue(v), true
}
