package expression

import (
	"github.com/expr-lang/expr/ast"
)

// Field returns the name of the top-level record field the expression
// consists of (such as the keyBy `user`), or false for anything else.
// Callers use it to take the AppendFieldKey fast path.
func (p *Program) Field() (string, bool) {
	id, ok := p.prog.Node().(*ast.IdentifierNode)
	if !ok {
		return "", false
	}
	switch id.Value {
	case VarTimestamp, VarKey, "_value", "$env":
		return "", false
	}
	return id.Value, true
}

// AppendFieldKey appends to dst what EvalKey would for the value of the
// top-level field of the JSON object value, without decoding the document.
// The first occurrence of the name counts; the rest of the document is not
// validated. ok is false when the fast path cannot decide (escaped strings,
// fractional numbers, nested values, malformed JSON) and when the field is
// missing or null (no key: an error EvalKey reports): evaluate the
// expression with EvalKey instead.
func AppendFieldKey(dst, value []byte, field string) ([]byte, bool) {
	i := skipWS(value, 0)
	if i >= len(value) || value[i] != '{' {
		return dst, false
	}
	i = skipWS(value, i+1)
	var found []byte
	foundKind := byte(0)
	if i < len(value) && value[i] == '}' {
		return dst, false // no fields: the key is missing
	}
	for {
		if i >= len(value) || value[i] != '"' {
			return dst, false
		}
		ks, ke, esc, next := scanString(value, i)
		if next < 0 || esc {
			return dst, false
		}
		i = skipWS(value, next)
		if i >= len(value) || value[i] != ':' {
			return dst, false
		}
		i = skipWS(value, i+1)
		if i >= len(value) {
			return dst, false
		}
		vs := i
		kind := value[i]
		var end int
		switch {
		case kind == '"':
			_, _, e, n := scanString(value, i)
			if n < 0 {
				return dst, false
			}
			if e {
				kind = 'E' // escaped string: slow path if it is ours
			}
			end = n
		case kind == '{' || kind == '[':
			end = skipNested(value, i)
		default:
			end = i
			for end < len(value) && !isDelim(value[end]) {
				end++
			}
		}
		if end < 0 || end == vs {
			return dst, false
		}
		if string(value[ks:ke]) == field {
			found, foundKind = value[vs:end], kind
			break // first occurrence (duplicate names are not valid JSON objects)
		}
		i = skipWS(value, end)
		if i >= len(value) {
			return dst, false
		}
		if value[i] == '}' {
			break
		}
		if value[i] != ',' {
			return dst, false
		}
		i = skipWS(value, i+1)
	}
	if found == nil {
		return dst, false // missing: the key is null
	}
	switch foundKind {
	case '"':
		return append(dst, found[1:len(found)-1]...), true
	case 't', 'f', 'n':
		s := string(found)
		if s == "true" || s == "false" {
			return append(dst, found...), true
		}
		return dst, false // null (no key) or not a literal
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		// Plain integers only, short enough to be exact, no leading zeros.
		digits := found
		if digits[0] == '-' {
			digits = digits[1:]
		}
		if len(digits) == 0 || len(digits) > 15 || (digits[0] == '0' && len(digits) > 1) {
			return dst, false
		}
		for _, c := range digits {
			if c < '0' || c > '9' {
				return dst, false
			}
		}
		if string(found) == "-0" {
			return append(dst, '0'), true
		}
		return append(dst, found...), true
	}
	return dst, false
}

func skipWS(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' {
		return i
	}
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func isDelim(c byte) bool {
	return c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// scanString scans the string starting at b[i] == '"'; it returns the
// content bounds, whether it has escapes, and the index after the closing
// quote (-1 if unterminated).
func scanString(b []byte, i int) (start, end int, escaped bool, next int) {
	start = i + 1
	for j := start; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return start, j, escaped, j + 1
		}
	}
	return 0, 0, false, -1
}

// skipNested skips an object or array starting at b[i]; -1 if malformed.
func skipNested(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		case '"':
			_, _, _, n := scanString(b, i)
			if n < 0 {
				return -1
			}
			i = n - 1
		}
	}
	return -1
}
