package expression

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestFieldsAreTheRecordFieldsRead(t *testing.T) {
	cases := map[string][]string{
		"valeu > 3":                          {"valeu"},
		"a + b * a":                          {"a", "b"},
		"user.name == 'x' && len(tags) > 0":  {"user", "tags"},
		"let y = 2; a * y":                   {"a"},
		"all(tags, {# > lim}) && _ts > 0":    {"tags", "lim"},
		"_key + string(_value) + $env.x":     nil,
		"nosuch(x)":                          {"x"},
		"x ?? 'none'":                        {"x"},
		`{"key": key, "value": value * 2}`:   {"key", "value"},
		"filter(items, .price > limit)[0].n": {"items", "limit"},
	}
	for src, want := range cases {
		p, err := Compile(src)
		if err != nil {
			t.Fatalf("Compile(%q): %v", src, err)
		}
		if got := p.Fields(); !slices.Equal(got, want) {
			t.Errorf("Fields(%q) = %q, want %q", src, got, want)
		}
	}
}

// A comparison over a misspelt field names it, and the fields the record
// has, on one line, instead of "<nil> > int" with a multi-line snippet.
func TestMissingFieldNamedInErrors(t *testing.T) {
	env := mustEnv(t, `{"key":"k1","value":5,"gone":null}`, 0, nil)
	cases := []struct {
		src  string
		eval func(p *Program) error
		is   error
		want string
	}{
		{"valeu > 3", func(p *Program) error { _, err := p.EvalBool(env); return err }, nil,
			`expression "valeu > 3": field "valeu" is missing in the record (its fields are gone, key, value): invalid operation: <nil> > int (1:7)`},
		{"valeu + gone", func(p *Program) error { _, err := p.Eval(env); return err }, nil,
			`expression "valeu + gone": field "valeu" is missing and field "gone" is null in the record (its fields are gone, key, value): invalid operation: <nil> + <nil> (1:7)`},
		{"a + b > 1", func(p *Program) error { _, err := p.Eval(env); return err }, nil,
			`expression "a + b > 1": fields "a", "b" are missing in the record (its fields are gone, key, value): invalid operation: <nil> + <nil> (1:3)`},
		{"valeu", func(p *Program) error { _, err := p.EvalBool(env); return err }, ErrNotBool,
			`expression "valeu": field "valeu" is missing in the record (its fields are gone, key, value): condition did not yield a bool (got <nil>)`},
		{"valeu", func(p *Program) error { _, err := p.EvalNumber(env); return err }, ErrNotNumber,
			`expression "valeu": field "valeu" is missing in the record (its fields are gone, key, value): value is not a number (gave <nil>)`},
	}
	for _, c := range cases {
		p, err := Compile(c.src)
		if err != nil {
			t.Fatal(err)
		}
		err = c.eval(p)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s:\n got %v\nwant %s", c.src, err, c.want)
		}
		if !errors.Is(err, ErrMissingField) {
			t.Errorf("%s: error does not wrap ErrMissingField", c.src)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: error does not wrap %v", c.src, c.is)
		}
	}

	// Errors not caused by a missing field stay as they were, on one line.
	p, _ := Compile("key / value")
	_, err := p.Eval(env)
	if err == nil || errors.Is(err, ErrMissingField) || strings.Contains(err.Error(), "\n") ||
		err.Error() != `expression "key / value": invalid operation: string / int (1:5)` {
		t.Errorf("got %q", err)
	}
	// A non-object record says so.
	p, _ = Compile("valeu > 3")
	if _, err := p.Eval(mustEnv(t, `42`, 0, nil)); err == nil || !strings.Contains(err.Error(), `field "valeu" is missing in the record (the record is not a JSON object)`) {
		t.Errorf("got %v", err)
	}
}

// A key expression that gives null is an error (Flink: "Assigned key must
// not be null"): for a missing field, a JSON null, or any null result.
func TestEvalKeyRejectsNull(t *testing.T) {
	env := mustEnv(t, `{"key":"k1","n":7,"gone":null}`, 0, nil)
	ok := map[string]string{"key": "k1", "n": "n", "valeu ?? 'none'": "none", "gone ?? 0": "0", "n + 1": "8"}
	for src, want := range ok {
		p, _ := Compile(src)
		got, err := p.EvalKey(nil, env)
		if src == "n" {
			want = "7"
		}
		if err != nil || string(got) != want {
			t.Errorf("EvalKey(%q) = %q, %v; want %q", src, got, err, want)
		}
	}
	for src, want := range map[string]string{
		"user":                `expression "user": field "user" is missing in the record (its fields are gone, key, n), so the key is null: key such records by a default, such as user ?? "none", or drop them with onError: skip`,
		"gone":                `expression "gone": field "gone" is null in the record (its fields are gone, key, n), so the key is null: key such records by a default, such as gone ?? "none", or drop them with onError: skip`,
		"n > 100 ? key : nil": `expression "n > 100 ? key : nil": the key is null: key such records by a default, such as (n > 100 ? key : nil) ?? "none", or drop them with onError: skip`,
		"user?.name":          `expression "user?.name": field "user" is missing in the record (its fields are gone, key, n), so the key is null: key such records by a default, such as (user?.name) ?? "none", or drop them with onError: skip`,
	} {
		p, _ := Compile(src)
		_, err := p.EvalKey(nil, env)
		if !errors.Is(err, ErrNullKey) || err.Error() != want {
			t.Errorf("EvalKey(%q):\n got %v\nwant %s", src, err, want)
		}
	}
}

// Naming missing fields costs nothing on the success path: conditions,
// number fields and keys evaluate without allocating (results that expr-lang
// must box, such as value * 2, allocate inside it, as before).
func TestEvalSuccessDoesNotAllocate(t *testing.T) {
	env := mustEnv(t, `{"key":"k7","seq":10,"value":2.5}`, 0, nil)
	cond, _ := CompileBool(`seq % 2 == 0 && key != "k1"`)
	key, _ := Compile("key")
	seq, _ := Compile("seq")
	num, _ := Compile("value")
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := cond.EvalBool(env); err != nil {
			t.Fatal(err)
		}
		if _, err := num.EvalNumber(env); err != nil {
			t.Fatal(err)
		}
		var err error
		if buf, err = key.EvalKey(buf[:0], env); err != nil {
			t.Fatal(err)
		}
		if buf, err = seq.EvalKey(buf[:0], env); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per evaluation, want 0", allocs)
	}
}
