package expression

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// oldDecode is the reference: what Env.Reset did before lazy loading
// (decode the whole document with encoding/json, then normalize numbers).
func oldDecode(value []byte) (map[string]any, error) {
	if len(value) == 0 {
		return nil, fmt.Errorf("empty")
	}
	var whole any
	if err := json.Unmarshal(value, &whole); err != nil {
		return nil, err
	}
	m, _ := normalize(whole).(map[string]any)
	return m, nil
}

var identRe = func(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	switch s {
	case "true", "false", "nil", "in", "not", "and", "or", "let", "matches", "contains", "startsWith", "endsWith", "if", "else":
		return false
	}
	return true
}

// checkFastPath compares the lazy, scanning Env with the reference decode
// on one record: Reset fails exactly when the reference fails, and every
// field an expression reads, alone or in an expression, evaluates to the
// reference's value (missing fields to nil).
func checkFastPath(t *testing.T, value []byte, extra ...string) {
	t.Helper()
	checkFastPathEnv(t, NewEnv(), value, extra...)
}

// checkFastPathEnv is checkFastPath with a given Env, reused across records
// (the previous record's fields must never show through).
func checkFastPathEnv(t *testing.T, e *Env, value []byte, extra ...string) {
	t.Helper()
	ref, refErr := oldDecode(value)
	err := e.Reset(value, 42, []byte("k"))
	if (err != nil) != (refErr != nil) {
		t.Fatalf("record %q: Reset error %v, reference error %v", value, err, refErr)
	}
	if err != nil {
		return
	}
	names := append([]string{"a", "b", "zz_absent"}, extra...)
	for k := range ref {
		names = append(names, k)
	}
	for _, n := range names {
		if !identRe(n) || n == VarTimestamp || n == VarKey || n == "_value" {
			continue
		}
		p, cerr := Compile(n)
		if cerr != nil {
			continue
		}
		got, gerr := p.Eval(e)
		if gerr != nil {
			t.Fatalf("record %q: %s: %v", value, n, gerr)
		}
		want := ref[n]
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("record %q: field %s = %#v (%T), reference %#v (%T)", value, n, got, got, want, want)
		}
		// select's copy of a plain field writes what encoding the value does
		if raw, ok := p.AppendFieldJSON(nil, e); ok {
			enc, err := AppendJSON(nil, want)
			if err != nil || string(raw) != string(enc) {
				t.Fatalf("record %q: AppendFieldJSON(%s) = %s, AppendJSON of the value = %s (%v)", value, n, raw, enc, err)
			}
		}
	}
	// Path programs (nested member access) give what the VM gives over the
	// decoded field: the same value or the same error.
	for _, src := range []string{"a.b", "a.a", `a["c"]`, "a.b.c", "b.value.seq", "a.esc", "value.a.a.a"} {
		p, err := Compile(src)
		if err != nil || p.path == nil {
			t.Fatalf("%s: compile %v, path %v: want a path program", src, err, p.path)
		}
		ref, _ := Compile(src)
		ref.path = nil
		got, gerr := p.Eval(e)
		want, werr := ref.Eval(e)
		if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() || !reflect.DeepEqual(got, want) {
			t.Fatalf("record %q: %s = %#v, %v; VM %#v, %v", value, src, got, gerr, want, werr)
		}
		if raw, ok := p.AppendFieldJSON(nil, e); ok {
			enc, err := AppendJSON(nil, want)
			if werr != nil || err != nil || string(raw) != string(enc) {
				t.Fatalf("record %q: AppendFieldJSON(%s) = %s, AppendJSON of the value = %s (%v, %v)", value, src, raw, enc, werr, err)
			}
		}
	}
	// A composed expression over two fields gives the reference's result.
	p, _ := Compile(`[a, b, a == nil ? "none" : "some"]`)
	got, gerr := p.Eval(e)
	want := []any{ref["a"], ref["b"], map[bool]string{true: "none", false: "some"}[ref["a"] == nil]}
	if gerr != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("record %q: composed = %#v, %v; reference %#v", value, got, gerr, want)
	}
}

// randJSON writes a random JSON value: numbers of every shape, strings
// with escapes and non-ASCII, nested objects and arrays, null, duplicate
// keys and odd whitespace; with small probability it corrupts the text.
func randJSON(r *rand.Rand, b *strings.Builder, depth int) {
	ws := func() {
		if r.IntN(6) == 0 {
			b.WriteString([]string{" ", "\n", "\t ", "\r\n"}[r.IntN(4)])
		}
	}
	ws()
	k := r.IntN(10)
	if depth > 3 && k >= 8 {
		k = r.IntN(8)
	}
	switch k {
	case 0:
		b.WriteString(strconv.Itoa(r.IntN(2000) - 1000))
	case 1:
		b.WriteString([]string{"0", "-0", "1e3", "1E-2", "2.5", "-0.0", "123456789012345678", "9007199254740993", "1.0", "4e15", "-12.75e1", "1e308", "0.1"}[r.IntN(13)])
	case 2:
		b.WriteString(strconv.FormatFloat(r.NormFloat64()*1e6, 'g', -1, 64))
	case 3, 4:
		b.WriteByte('"')
		for range r.IntN(8) {
			b.WriteString([]string{"a", "Z", `\"`, `\\`, `\n`, `\u00e9`, `\ud83d\ude00`, "é", "€", `\/`, " ", `\t`, `\u0000`, "\xff", `\ud800`}[r.IntN(15)])
		}
		b.WriteByte('"')
	case 5:
		b.WriteString([]string{"true", "false", "null"}[r.IntN(3)])
	case 6, 7:
		if depth == 0 {
			randObject(r, b, depth)
			return
		}
		b.WriteString(strconv.Itoa(r.IntN(300)))
	case 8:
		randObject(r, b, depth+1)
	case 9:
		b.WriteByte('[')
		for i := range r.IntN(4) {
			if i > 0 {
				b.WriteByte(',')
			}
			randJSON(r, b, depth+1)
		}
		b.WriteByte(']')
	}
	ws()
}

var keyNames = []string{"a", "b", "c", "value", "seq", "x_1", "n", "s", "a"}

func randObject(r *rand.Rand, b *strings.Builder, depth int) {
	b.WriteByte('{')
	for i := range r.IntN(6) {
		if i > 0 {
			b.WriteByte(',')
		}
		if r.IntN(20) == 0 {
			b.WriteString(`"e\u0073c"`) // an escaped key
		} else {
			b.WriteString(strconv.Quote(keyNames[r.IntN(len(keyNames))]))
		}
		b.WriteByte(':')
		randJSON(r, b, depth+1)
	}
	b.WriteByte('}')
}

func corrupt(r *rand.Rand, s string) string {
	if len(s) == 0 {
		return s
	}
	i := r.IntN(len(s))
	switch r.IntN(4) {
	case 0:
		return s[:i] + s[i+1:]
	case 1:
		return s[:i]
	case 2:
		return s[:i] + string("{}[]\",:x0\\\x01"[r.IntN(11)]) + s[i:]
	}
	return s + " x"
}

// TestFastPathDifferential runs the differential check on 30,000 random
// records, a tenth of them corrupted.
func TestFastPathDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 15))
	shared := NewEnv()
	for n := range 30000 {
		var b strings.Builder
		randObject(r, &b, 0)
		s := b.String()
		if r.IntN(10) == 0 {
			s = corrupt(r, s)
		}
		if n%2 == 0 {
			checkFastPathEnv(t, shared, []byte(s))
		} else {
			checkFastPath(t, []byte(s))
		}
	}
}

// TestFastPathCases pins the behaviours the differential test relies on.
func TestFastPathCases(t *testing.T) {
	for _, c := range []string{
		`{"a":1,"a":2}`,                 // duplicates: the last wins
		`{"a":{"x":1,"x":[1,2]},"b":3}`, // nested duplicates: encoding/json's rule
		`{"a":"\u00e9\n","b":"\xff"}`,
		`{"a":1e400}`, // float64 overflow: an error, as before
		`{"a":1}x`,    // trailing garbage
		`{"a":01}`,
		`{"a":"x` + "\x01" + `"}`,
		`{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":tru}`, `{"a" 1}`, `{"a":1,}`, `{,}`, `{}`, ` {} `,
		`{"e\u0073c":5,"a":2}`,
		// long strings take the 8-byte scan: a control byte, an escape or
		// invalid UTF-8 deep inside must be found there too
		`{"a":"abcdefghijklmnopqrstuvwxyz0123456789` + "\x1f" + `abc"}`,
		`{"a":"abcdefghijklmnopqrstuvwxyz0123456789\"abc\\def\u00e9ghijklmnopqrstu","b":"` + strings.Repeat("é\xff", 20) + `"}`,
		`{"a":"abcdefghijklmnopqrstuvwxyz0123456789\q"}`,
		`[1,2]`, `3`, `"s"`, `null`,
		`{"a":9007199254740993,"b":9007199254740992,"c":-9007199254740991}`,
		// paths: nested duplicates, a step that is no object, null, deeper
		`{"a":{"b":1,"b":{"c":"x"},"a":null,"c":[1]},"b":{"value":{"seq":7}}}`,
		`{"a":{"b":{"c":2,"c":3}},"a":{"b":5}}`,
		`{"a":[{"b":1}],"b":{"value":"s"},"value":{"a":{"a":{"a":-0}}}}`,
		`{"a":{"e\u0073c":1,"b":{"c":1e3}},"b":{"value":{"seq":9007199254740993}}}`,
	} {
		checkFastPath(t, []byte(c), "esc")
	}
}

// FuzzFastPath is the differential check on fuzzer-made records; its seed
// corpus is in testdata/fuzz/FuzzFastPath. Run with
// go test ./internal/expression -run '^$' -fuzz FuzzFastPath -fuzztime 60s.
func FuzzFastPath(f *testing.F) {
	r := rand.New(rand.NewPCG(2, 15))
	for range 20 {
		var b strings.Builder
		randObject(r, &b, 0)
		f.Add([]byte(b.String()))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		checkFastPath(t, value)
	})
}

// TestPlain8 checks the 8-byte string scan against the byte table.
func TestPlain8(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 15))
	interesting := []byte{0, 0x1f, 0x20, '"', '\\', 'a', 0x7f, 0x80, 0xa2, 0xdc, 0xff, 0x21, 0x5b, 0x5d}
	var b [8]byte
	for range 200000 {
		for i := range b {
			if r.IntN(2) == 0 {
				b[i] = interesting[r.IntN(len(interesting))]
			} else {
				b[i] = byte(r.IntN(256))
			}
		}
		want := true
		for _, c := range b {
			want = want && strPlain[c]
		}
		if got := plain8(binary.LittleEndian.Uint64(b[:])); got != want {
			t.Fatalf("plain8(%q) = %v, want %v", b, got, want)
		}
	}
}

// TestObjectProgram compares the object fast path of map with the old
// path (the VM builds a map, encoding/json writes it) on random records.
func TestObjectProgram(t *testing.T) {
	exprs := []string{
		`{"key": a, "double": b * 2}`,
		`{"z": a, "a": b, "m": c, "a": value}`, // duplicate key: the first wins
		`{"s": s, "n": n, "x": x_1, "seq": seq, "f": 1e21, "g": 1e-7, "h": 0.1 * 3, "t": "<&>\u2028"}`,
		`{"nested": {"q": a}, "list": [a, b], "none": nil, "ts": _ts, "k": _key}`,
		`{"q": n / 0, "r": 1}`, `{"big": (n ?? 1) * 1e300 * 1e300, "c": c}`,
		`{"sum": a + b}`, // errors on strings: the old error
	}
	var progs []*ObjectProgram
	var origs []*Program
	for _, src := range exprs {
		o := CompileObject(src)
		if o == nil {
			t.Fatalf("%s did not compile as an object", src)
		}
		progs = append(progs, o)
		p, _ := Compile(src)
		origs = append(origs, p)
	}
	for _, src := range []string{`a`, `{a: 1}`, `[1]`, `{}`} {
		if CompileObject(src) != nil {
			t.Fatalf("%s compiled as an object literal", src)
		}
	}
	r := rand.New(rand.NewPCG(4, 15))
	e, ref := NewEnv(), NewEnv()
	for range 5000 {
		var b strings.Builder
		randObject(r, &b, 0)
		v := []byte(b.String())
		if e.Reset(v, 7, []byte("k")) != nil {
			continue
		}
		_ = ref.Reset(v, 7, []byte("k"))
		for i, o := range progs {
			got, gerr := o.AppendEval(nil, e)
			var want []byte
			res, werr := origs[i].Eval(ref)
			if werr == nil {
				if want, werr = AppendJSON(nil, res); werr != nil {
					werr = fmt.Errorf("expression %q: %w", exprs[i], werr)
				}
			}
			if (gerr == nil) != (werr == nil) || string(got) != string(want) || gerr != nil && gerr.Error() != werr.Error() {
				t.Fatalf("record %s, %s:\n got %s, %v\nwant %s, %v", v, exprs[i], got, gerr, want, werr)
			}
		}
	}
}

// TestWholeRecordAccess: expressions that see the whole record ($env,
// _value) or let-bound names give what they gave with the full decode.
func TestWholeRecordAccess(t *testing.T) {
	rec := []byte(`{"a":5,"c":{"d":[1,2.5]},"_ts":"shadowed"}`)
	for _, src := range []string{`$env["a"]`, `$env.a`, `"c" in $env`, `_value.c.d`, `let b = a; b`, `len($env)`, `(let a = 1; a) + a`, `_ts`, `_key`, `c.d[1]`} {
		p, err := Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		lazy, full := NewEnv(), NewEnv()
		_ = lazy.Reset(rec, 9, []byte("k"))
		_ = full.Reset(rec, 9, []byte("k"))
		if err := full.decodeAll(); err != nil {
			t.Fatal(err)
		}
		got, gerr := p.Eval(lazy)
		want, werr := p.Eval(full)
		if !reflect.DeepEqual(got, want) || (gerr == nil) != (werr == nil) {
			t.Fatalf("%s = %#v, %v; with the full decode %#v, %v", src, got, gerr, want, werr)
		}
	}
}
