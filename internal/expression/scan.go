package expression

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// member is one top-level member of a record's JSON object, as offsets into
// the record bytes: the key's content and the value's bytes.
type member struct {
	ks, ke int // key content (between the quotes); keys never have escapes here
	vs, ve int // the value's bytes
}

// maxScanDepth is encoding/json's nesting limit: deeper documents take the
// full decode, which reports its error.
const maxScanDepth = 10000

// indexObject checks that b is exactly one valid JSON object (with optional
// surrounding whitespace), by the grammar encoding/json accepts, and appends
// its top-level members to dst. ok is false when the document is invalid or
// when the fast path cannot index it exactly (a key with escapes, a number
// float64 cannot hold, nesting beyond encoding/json's limit): the caller
// then decodes the whole document, which gives the old result or error. It
// does not allocate beyond growing dst.
func indexObject(dst []member, b []byte) ([]member, bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return dst, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return dst, skipWS(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return dst, false
		}
		next, esc := validString(b, i)
		if next < 0 || esc {
			return dst, false
		}
		ks, ke := i+1, next-1
		i = skipWS(b, next)
		if i >= len(b) || b[i] != ':' {
			return dst, false
		}
		i = skipWS(b, i+1)
		end := validValue(b, i, 1)
		if end < 0 {
			return dst, false
		}
		dst = append(dst, member{ks: ks, ke: ke, vs: i, ve: end})
		i = skipWS(b, end)
		if i >= len(b) {
			return dst, false
		}
		if b[i] == '}' {
			return dst, skipWS(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return dst, false
		}
		i = skipWS(b, i+1)
	}
}

// validValue returns the index after the JSON value starting at b[i], or
// -1 when it is not valid (or not indexable, see indexObject).
func validValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		n, _ := validString(b, i)
		return n
	case c == '{' || c == '[':
		if depth >= maxScanDepth {
			return -1
		}
		return validNested(b, i, depth+1)
	case c == '-' || (c >= '0' && c <= '9'):
		return validNumber(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	}
	return -1
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

// validNested checks an object or array starting at b[i].
func validNested(b []byte, i, depth int) int {
	if b[i] == '[' {
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1
		}
		for {
			end := validValue(b, i, depth)
			if end < 0 {
				return -1
			}
			i = skipWS(b, end)
			if i >= len(b) {
				return -1
			}
			if b[i] == ']' {
				return i + 1
			}
			if b[i] != ',' {
				return -1
			}
			i = skipWS(b, i+1)
		}
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		next, _ := validString(b, i)
		if next < 0 {
			return -1
		}
		i = skipWS(b, next)
		if i >= len(b) || b[i] != ':' {
			return -1
		}
		end := validValue(b, skipWS(b, i+1), depth)
		if end < 0 {
			return -1
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return -1
		}
		if b[i] == '}' {
			return i + 1
		}
		if b[i] != ',' {
			return -1
		}
		i = skipWS(b, i+1)
	}
}

// validString checks the string starting at b[i] == '"' (no raw control
// characters, only JSON escapes) and returns the index after its closing
// quote and whether it has escapes; -1 when invalid. Invalid UTF-8 is
// accepted, as encoding/json does (it decodes to U+FFFD).
func validString(b []byte, i int) (next int, escaped bool) {
	j := i + 1
	for j < len(b) {
		c := b[j]
		if strPlain[c] {
			j++
			// In a long run of plain bytes, skip 8 at a time (short strings,
			// most keys and values, stay on the byte loop).
			if j-i > 16 {
				for j+8 <= len(b) && plain8(binary.LittleEndian.Uint64(b[j:])) {
					j += 8
				}
			}
			continue
		}
		switch {
		case c == '"':
			return j + 1, escaped
		case c < 0x20:
			return -1, false
		case c == '\\':
			escaped = true
			j++
			if j >= len(b) {
				return -1, false
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) {
					return -1, false
				}
				for k := j + 1; k <= j+4; k++ {
					if !isHex(b[k]) {
						return -1, false
					}
				}
				j += 4
			default:
				return -1, false
			}
		}
		j++
	}
	return -1, false
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plain8 reports whether none of the 8 bytes of x is '"', '\\' or below
// 0x20 (bytes >= 0x80 count as plain, as in strPlain).
func plain8(x uint64) bool {
	q := x ^ (lsb * '"')
	bs := x ^ (lsb * '\\')
	bad := ((q - lsb) & ^q) | ((bs - lsb) & ^bs) | ((x - lsb*0x20) & ^x)
	return bad&msb == 0
}

// strPlain marks the bytes a string may hold that need no attention.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// validNumber checks a JSON number starting at b[i] and returns the index
// after it. A number float64 cannot hold (which encoding/json refuses into
// an interface) gives -1 so that the full decode reports it.
func validNumber(b []byte, i int) int {
	start := i
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return -1
	}
	switch {
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return -1
	}
	check := i-start > 300 // only huge integers or exponents can overflow
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return -1
		}
		check = true
	}
	if check {
		if _, err := strconv.ParseFloat(bytesString(b[start:i]), 64); err != nil {
			return -1
		}
	}
	return i
}

// bytesString views b as a string without copying; the string must not
// outlive b's contents.
func bytesString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// smallInts holds boxed ints in [smallIntMin, smallIntMax) so that loading a
// small integer field does not allocate (Go boxes only 0..255 for free).
const (
	smallIntMin = -1024
	smallIntMax = 1 << 14
)

var smallInts = func() []any {
	s := make([]any, smallIntMax-smallIntMin)
	for i := range s {
		s[i] = i + smallIntMin
	}
	return s
}()

func boxInt(n int) any {
	if n >= smallIntMin && n < smallIntMax {
		return smallInts[n-smallIntMin]
	}
	return n
}

// decodeValue decodes one JSON value that indexObject validated into what
// the full decode (encoding/json into any, then normalize) gives for it.
func decodeValue(v []byte) any {
	switch c := v[0]; {
	case c == '"':
		s := v[1 : len(v)-1]
		plain := true
		for _, ch := range s {
			if ch == '\\' || ch >= utf8.RuneSelf {
				plain = false
				break
			}
		}
		if plain || (!hasByte(s, '\\') && utf8.Valid(s)) {
			return string(s)
		}
		var out string
		_ = json.Unmarshal(v, &out) // validated: escapes and invalid UTF-8 as encoding/json
		return out
	case c == 't':
		return true
	case c == 'f':
		return false
	case c == 'n':
		return nil
	case c == '{' || c == '[':
		var out any
		_ = json.Unmarshal(v, &out)
		return normalize(out)
	}
	return decodeNumber(v)
}

func hasByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// decodeNumber gives what float64 decoding then normalize give: an int when
// the value is integral and within 53 bits, else the float64.
func decodeNumber(v []byte) any {
	// Fast path: up to 15 plain digits is exact as an int.
	d, neg := v, false
	if d[0] == '-' {
		d, neg = d[1:], true
	}
	if len(d) <= 15 {
		n, plain := 0, true
		for _, c := range d {
			if c < '0' || c > '9' {
				plain = false
				break
			}
			n = n*10 + int(c-'0')
		}
		if plain {
			if neg {
				n = -n
			}
			return boxInt(n)
		}
	}
	f, _ := strconv.ParseFloat(bytesString(v), 64) // validated
	if f == math.Trunc(f) && f > -maxExactInt && f < maxExactInt {
		return boxInt(int(f))
	}
	return f
}

// AppendFieldJSON appends what AppendJSON(p.Eval(env)) would, for a
// program that is one plain top-level field (Field) or a path (Path), by copying the field's
// JSON from the record when its text is already what AppendJSON writes: an
// integer of up to 15 digits without leading zeros, a string of printable
// ASCII without escapes, true, false. ok is false otherwise (the field is
// missing, the record was decoded whole, another shape): use Eval and
// AppendJSON then. It does not allocate beyond growing dst.
func (p *Program) AppendFieldJSON(dst []byte, env *Env) ([]byte, bool) {
	if env.full {
		return dst, false
	}
	var v []byte
	if p.path != nil {
		v = env.rawPath(p.path)
	} else if name, isField := p.Field(); isField {
		for i := len(env.members) - 1; i >= 0; i-- {
			m := env.members[i]
			if string(env.raw[m.ks:m.ke]) == name {
				v = env.raw[m.vs:m.ve]
				break
			}
		}
	}
	if v == nil {
		return dst, false
	}
	switch c := v[0]; {
	case c == '"':
		for _, ch := range v[1 : len(v)-1] {
			if ch < 0x20 || ch >= 0x7f || ch == '\\' || ch == '"' {
				return dst, false
			}
		}
	case c == 't' || c == 'f':
	case c == '-' || (c >= '0' && c <= '9'):
		d := v
		if c == '-' {
			d = d[1:]
		}
		if len(d) == 0 || len(d) > 15 || (d[0] == '0' && (len(d) > 1 || c == '-')) {
			return dst, false
		}
		for _, ch := range d {
			if ch < '0' || ch > '9' {
				return dst, false
			}
		}
	default:
		return dst, false
	}
	return append(dst, v...), true
}
