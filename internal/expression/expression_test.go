package expression

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
)

func mustEnv(t *testing.T, value string, ts int64, key []byte) *Env {
	t.Helper()
	e := NewEnv()
	if err := e.Reset([]byte(value), ts, key); err != nil {
		t.Fatalf("Reset(%s): %v", value, err)
	}
	return e
}

func TestEval(t *testing.T) {
	env := mustEnv(t, `{"key":"k7","seq":10,"value":2.5,"tags":["a","b"],"user":{"name":"ann"}}`, 1234, []byte("k7"))
	cases := []struct {
		src  string
		want any
	}{
		{"key", "k7"},
		{"seq % 3", 1},
		{"seq + 1", 11},
		{"value * 2", 5.0},
		{"_ts", 1234},
		{"_key", "k7"},
		{"user.name", "ann"},
		{"len(tags)", 2},
		{`key + "-" + string(seq)`, "k7-10"},
		{"missing == nil", true},
	}
	for _, c := range cases {
		p, err := Compile(c.src)
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.src, err)
		}
		got, err := p.Eval(env)
		if err != nil {
			t.Fatalf("Eval(%q): %v", c.src, err)
		}
		if got != c.want {
			t.Errorf("Eval(%q) = %#v, want %#v", c.src, got, c.want)
		}
		if p.Source() != c.src {
			t.Errorf("Source() = %q", p.Source())
		}
	}
}

func TestEnvReuseClearsFields(t *testing.T) {
	e := mustEnv(t, `{"a":1,"b":2}`, api.NoTimestamp, nil)
	if err := e.Reset([]byte(`{"a":3}`), api.NoTimestamp, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := Compile("b == nil && a == 3 && _ts == nil && _key == nil")
	got, err := p.Eval(e)
	if err != nil || got != true {
		t.Fatalf("got %v, %v; want true (old field b must be gone)", got, err)
	}
}

func TestNonObjectValue(t *testing.T) {
	e := mustEnv(t, `42`, 0, nil)
	p, _ := Compile("_value + 1")
	got, err := p.Eval(e)
	if err != nil || got != 43 {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestCompileErrorQuotesExpression(t *testing.T) {
	_, err := Compile("a +")
	if err == nil || !strings.HasPrefix(err.Error(), `expression "a +": `) {
		t.Fatalf("err = %v, want it to start with the quoted expression", err)
	}
	if _, err := Compile(""); err == nil {
		t.Fatal("empty expression compiled")
	}
}

func TestCompileBool(t *testing.T) {
	if _, err := CompileBool(`"x" + "y"`); err == nil {
		t.Fatal("string expression accepted as condition")
	}
	p, err := CompileBool("seq > 5")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := p.EvalBool(mustEnv(t, `{"seq":6}`, 0, nil))
	if err != nil || !ok {
		t.Fatalf("got %v, %v", ok, err)
	}
	// Type unknown at compile time, wrong at run time.
	p, err = CompileBool("name")
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.EvalBool(mustEnv(t, `{"name":"x"}`, 0, nil))
	if !errors.Is(err, ErrNotBool) {
		t.Fatalf("err = %v, want ErrNotBool", err)
	}
	_, err = p.Eval(mustEnv(t, `{"name":"x"}`, 0, nil))
	if !errors.Is(err, ErrNotBool) {
		t.Fatalf("Eval err = %v, want ErrNotBool", err)
	}
}

func TestRuntimeError(t *testing.T) {
	p, _ := Compile("a / b")
	_, err := p.Eval(mustEnv(t, `{"a":"x","b":2}`, 0, nil))
	if err == nil || !strings.Contains(err.Error(), `expression "a / b"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestBadJSON(t *testing.T) {
	e := NewEnv()
	if err := e.Reset([]byte(`{"a":`), 0, nil); err == nil {
		t.Fatal("bad JSON accepted")
	}
	if err := e.Reset(nil, 0, nil); err == nil {
		t.Fatal("empty value accepted")
	}
}

func TestAppendKey(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{"k1", "k1"},
		{7, "7"},
		{int64(-3), "-3"},
		{2.0, "2"},
		{2.5, "2.5"},
		{true, "true"},
		{nil, "null"},
		{[]any{1, "a"}, `[1,"a"]`},
		{map[string]any{"b": 1, "a": 2}, `{"a":2,"b":1}`},
	}
	for _, c := range cases {
		if got := string(AppendKey(nil, c.v)); got != c.want {
			t.Errorf("AppendKey(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	for _, v := range []any{"a\"b\\c\n\x01é", 3, 2.5, 1e21, true, nil, map[string]any{"x": []any{1, "y"}}} {
		b, err := AppendJSON(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		var back any
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("AppendJSON(%#v) = %s: not JSON: %v", v, b, err)
		}
	}
	if _, err := AppendJSON(nil, nanValue()); err == nil {
		t.Fatal("NaN encoded")
	}
}

func nanValue() float64 {
	zero := 0.0
	return zero / zero
}

func BenchmarkFilter(b *testing.B) {
	p, err := CompileBool("seq % 2 == 0 && key != \"k1\"")
	if err != nil {
		b.Fatal(err)
	}
	e := mustEnvB(b, `{"key":"k7","seq":10,"value":2.5}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.EvalBool(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResetAndEval(b *testing.B) {
	p, _ := Compile("key")
	e := NewEnv()
	v := []byte(`{"key":"k7","seq":10,"value":2.5,"ts":1000}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Reset(v, 1, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Eval(e); err != nil {
			b.Fatal(err)
		}
	}
}

func mustEnvB(b *testing.B, v string) *Env {
	e := NewEnv()
	if err := e.Reset([]byte(v), 0, nil); err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkFilterOneField is a filter over one numeric field of a datagen
// record, record loading included (Reset + EvalBool): the target is
// at most 150 ns per record. BenchmarkFilterOneFieldFullDecode is the same
// with the whole document decoded (the path every record took before).
func BenchmarkFilterOneField(b *testing.B) { benchFilterOneField(b, false) }

func BenchmarkFilterOneFieldFullDecode(b *testing.B) { benchFilterOneField(b, true) }

func benchFilterOneField(b *testing.B, full bool) {
	p, err := CompileBool("value % 2 == 0")
	if err != nil {
		b.Fatal(err)
	}
	e := NewEnv()
	recs := make([][]byte, 64)
	for i := range recs {
		recs[i] = []byte(fmt.Sprintf(`{"key":"k%d","seq":%d,"value":%d,"ts":%d}`, i*7%100, 1000000+i, i*37%1000, 1000000+i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := e.Reset(recs[i&63], 1, nil); err != nil {
			b.Fatal(err)
		}
		if full {
			_ = e.decodeAll()
		}
		if _, err := p.EvalBool(e); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMapObject is map's `{"key": key, "double": value * 2}` on a
// datagen record, record loading included: the object fast path
// (AppendEval) against the VM building a map that encoding/json encodes
// (BenchmarkMapObjectViaMap, the path before).
func BenchmarkMapObject(b *testing.B) { benchMapObject(b, true) }

func BenchmarkMapObjectViaMap(b *testing.B) { benchMapObject(b, false) }

func benchMapObject(b *testing.B, fast bool) {
	const src = `{"key": key, "double": value * 2}`
	o := CompileObject(src)
	p, _ := Compile(src)
	e := NewEnv()
	rec := []byte(`{"key":"k7","seq":1000001,"value":431,"ts":1000001}`)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Reset(rec, 1, nil); err != nil {
			b.Fatal(err)
		}
		var err error
		if fast {
			buf, err = o.AppendEval(buf[:0], e)
		} else {
			var v any
			if v, err = p.Eval(e); err == nil {
				buf, err = AppendJSON(buf[:0], v)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResetBid is Reset alone (the validating index) on a Nexmark
// bid of about 220 bytes.
func BenchmarkResetBid(b *testing.B) {
	rec := []byte(`{"event_type":2,"auction":1000,"bidder":1001,"price":12734,"channel":"Google","url":"https://www.nexmark.com/hot/google/item.htm?query=1","dateTime":1704067200012,"extra":"coeqtijorvujpulrxvfxpqpadpqbyxyrznnciteyfnbbnisexvqguxlwmeqekezpifyfpfvhgkc"}`)
	e := NewEnv()
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Reset(rec, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPathField reads five members of the left side of a join's
// output record ({"left": bid, "right": auction}, about 560 bytes), as
// q13's and q20's select does: each a path program (path.go);
// BenchmarkPathFieldVM is the same through the VM, which decodes the whole
// nested object for each.
func BenchmarkPathField(b *testing.B) { benchPathField(b, true) }

func BenchmarkPathFieldVM(b *testing.B) { benchPathField(b, false) }

func benchPathField(b *testing.B, paths bool) {
	rec := []byte(`{"left":{"event_type":2,"auction":1000,"bidder":1001,"price":12734,"channel":"Google","url":"https://www.nexmark.com/hot/google/item.htm?query=1","dateTime":1704067200012,"extra":"coeqtijorvujpulrxvfxpqpadpqbyxyrznnciteyfnbbnisexvqguxlwmeqekezpifyfpfvhgkc"},` +
		`"right":{"event_type":1,"id":1000,"itemName":"wkx mgee","description":"eszpqxtdxrvwmmywkmogoahf","initialBid":28873,"reserve":29458,"dateTime":1704067200003,"expires":1704067200103,"seller":1001,"category":10,"extra":"zcuupgbqzqlylchhrjbjmxdyqppcgmihpnltrfmkjmcazsvxyjoufoxmdtylleqv"}}`)
	var progs []*Program
	for _, src := range []string{"left.auction", "left.bidder", "left.price", "left.dateTime", "right.extra"} {
		p, err := Compile(src)
		if err != nil {
			b.Fatal(err)
		}
		if !paths {
			p.path = nil
		}
		progs = append(progs, p)
	}
	e := NewEnv()
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Reset(rec, 1, nil); err != nil {
			b.Fatal(err)
		}
		out = out[:0]
		for _, p := range progs {
			var ok bool
			if out, ok = p.AppendFieldJSON(out, e); ok {
				continue
			}
			v, err := p.Eval(e)
			if err != nil {
				b.Fatal(err)
			}
			out, _ = AppendJSON(out, v)
		}
	}
}
