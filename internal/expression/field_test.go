package expression

import (
	"errors"
	"testing"
)

// The fast path must agree with evaluating the expression.
func TestAppendFieldKeyMatchesEval(t *testing.T) {
	docs := []string{
		`{"key":"k7","seq":10}`,
		` { "seq" : -3 , "key" : "a b" } `,
		`{"key":12}`,
		`{"key":-0}`,
		`{"key":true}`,
		`{"key":null}`,
		`{"other":1}`,
		`{}`,
		`{"nested":{"key":"no"},"arr":[1,"]",{"x":"}"}],"key":"yes"}`,
		`{"key":"esc\"aped"}`,
		`{"key":1.5}`,
		`{"key":2.0}`,
		`{"key":1e3}`,
		`{"key":{"a":1}}`,
		`{"key":[1,2]}`,
		`{"key":12345678901234567}`,
		`{"key":"é"}`,
	}
	p, err := Compile("key")
	if err != nil {
		t.Fatal(err)
	}
	field, ok := p.Field()
	if !ok || field != "key" {
		t.Fatalf("Field() = %q, %v", field, ok)
	}
	env := NewEnv()
	fast := 0
	for _, d := range docs {
		if err := env.Reset([]byte(d), 0, nil); err != nil {
			t.Fatal(err)
		}
		want, err := p.EvalKey(nil, env)
		got, ok := AppendFieldKey(nil, []byte(d), "key")
		if err != nil {
			// A missing or null key: the fast path must leave it to EvalKey.
			if !errors.Is(err, ErrNullKey) {
				t.Fatalf("%s: EvalKey: %v", d, err)
			}
			if ok {
				t.Errorf("%s: fast path gave key %q, EvalKey an error: %v", d, got, err)
			}
			continue
		}
		if ok {
			fast++
			if string(got) != string(want) {
				t.Errorf("%s: fast path %q, eval %q", d, got, want)
			}
		}
	}
	if fast < 7 {
		t.Errorf("fast path taken for only %d documents", fast)
	}
	for _, bad := range []string{`{"key":`, `[1]`, `{"key" 1}`, `{"key":"x`, `{"a":{"b":1}`, `nope`} {
		if _, ok := AppendFieldKey(nil, []byte(bad), "key"); ok {
			t.Errorf("%s: fast path accepted malformed JSON", bad)
		}
	}
	for _, src := range []string{"key + 1", "_ts", "a.b", "_key"} {
		p, _ := Compile(src)
		if _, ok := p.Field(); ok {
			t.Errorf("Field() true for %q", src)
		}
	}
}

func BenchmarkAppendFieldKey(b *testing.B) {
	v := []byte(`{"key":"k42","seq":123456,"value":789,"ts":1700000000000}`)
	var dst []byte
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = AppendFieldKey(dst[:0], v, "key")
	}
}
