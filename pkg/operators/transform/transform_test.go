package transform

import (
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
)

type sliceOut struct{ recs []api.Record }

func (o *sliceOut) Collect(r api.Record) {
	o.recs = append(o.recs, api.Record{Key: append([]byte(nil), r.Key...), Value: append([]byte(nil), r.Value...), Timestamp: r.Timestamp})
}

func newOp(t *testing.T, name string, cfg map[string]any) api.Operator {
	t.Helper()
	for _, typ := range Types() {
		if typ.Name != name {
			continue
		}
		c, err := typ.DecodeConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		op, err := typ.NewOperator(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := op.Open(nil); err != nil {
			t.Fatal(err)
		}
		return op
	}
	t.Fatalf("no type %s", name)
	return nil
}

func TestOperators(t *testing.T) {
	in := api.Record{Key: []byte("k1"), Value: []byte(`{"key":"k1","n":4,"s":"a\"b"}`), Timestamp: 9}
	cases := []struct {
		name string
		cfg  map[string]any
		want string // "" = dropped
	}{
		{"map", map[string]any{"expression": "n * 2"}, "8"},
		{"map", map[string]any{"expression": `s + "!"`}, `"a\"b!"`},
		{"map", map[string]any{"expression": "_ts + 1"}, "10"},
		{"filter", map[string]any{"condition": "n > 3"}, `{"key":"k1","n":4,"s":"a\"b"}`},
		{"filter", map[string]any{"condition": "n > 4"}, ""},
		{"select", map[string]any{"fields": map[string]any{"z": "key", "a": "n % 3", "k": "_key"}}, `{"a":1,"k":"k1","z":"k1"}`},
	}
	for _, c := range cases {
		out := &sliceOut{}
		if err := newOp(t, c.name, c.cfg).ProcessRecord(in, out); err != nil {
			t.Fatalf("%s %v: %v", c.name, c.cfg, err)
		}
		if c.want == "" {
			if len(out.recs) != 0 {
				t.Fatalf("%s %v kept %s", c.name, c.cfg, out.recs[0].Value)
			}
			continue
		}
		if len(out.recs) != 1 || string(out.recs[0].Value) != c.want || string(out.recs[0].Key) != "k1" || out.recs[0].Timestamp != 9 {
			t.Fatalf("%s %v -> %+v, want value %s with key and timestamp kept", c.name, c.cfg, out.recs, c.want)
		}
	}
}

func TestOperatorErrors(t *testing.T) {
	op := newOp(t, "map", map[string]any{"expression": "n + 1"})
	if err := op.ProcessRecord(api.Record{Value: []byte(`{"n":`)}, &sliceOut{}); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("bad JSON: err = %v", err)
	}
	op = newOp(t, "filter", map[string]any{"condition": "n"})
	if err := op.ProcessRecord(api.Record{Value: []byte(`{"n":1}`)}, &sliceOut{}); err == nil {
		t.Fatal("non-bool condition accepted")
	}
	if _, err := Types()[0].NewOperator(api.Config{"expression": "a +"}); err == nil || !strings.Contains(err.Error(), `"a +"`) {
		t.Fatalf("compile error = %v", err)
	}
}
