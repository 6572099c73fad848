package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testType() *OperatorType {
	return &OperatorType{
		Name: "fake",
		Kind: KindOperator,
		Fields: []Field{
			{Name: "count", Type: TypeInt, Default: 10, Validate: func(v any) error {
				if v.(int64) < 0 {
					return errors.New("must be >= 0")
				}
				return nil
			}},
			{Name: "ratio", Type: TypeFloat, Default: 0.5},
			{Name: "enabled", Type: TypeBool},
			{Name: "path", Type: TypeString, Required: true},
			{Name: "mode", Type: TypeString, Default: "a", Enum: []string{"a", "b"}},
			{Name: "every", Type: TypeDuration, Default: "1s"},
			{Name: "where", Type: TypeExpression},
			{Name: "fields", Type: TypeStringList},
			{Name: "select", Type: TypeStringMap},
		},
	}
}

func TestDecodeConfig(t *testing.T) {
	base := func(extra map[string]any) map[string]any {
		m := map[string]any{"path": "/tmp/x"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	defaults := Config{
		"count": int64(10), "ratio": 0.5, "enabled": false, "path": "/tmp/x", "mode": "a",
		"every": time.Second, "where": "", "fields": []string(nil), "select": map[string]string(nil),
	}
	with := func(k string, v any) Config {
		c := Config{}
		for kk, vv := range defaults {
			c[kk] = vv
		}
		c[k] = v
		return c
	}
	tests := []struct {
		name    string
		raw     map[string]any
		want    Config
		wantErr []error  // sentinel per FieldError, in order
		fields  []string // field per FieldError
		substr  string
	}{
		{name: "defaults", raw: base(nil), want: defaults},
		{name: "yaml int", raw: base(map[string]any{"count": 7}), want: with("count", int64(7))},
		{name: "json integral float", raw: base(map[string]any{"count": 7.0}), want: with("count", int64(7))},
		{name: "json number", raw: base(map[string]any{"count": json.Number("9007199254740993")}), want: with("count", int64(9007199254740993))},
		{name: "non-integral float", raw: base(map[string]any{"count": 7.5}), wantErr: []error{ErrFieldType}, fields: []string{"count"}, substr: "want an integer, got 7.5"},
		{name: "int from string rejected", raw: base(map[string]any{"count": "7"}), wantErr: []error{ErrFieldType}, fields: []string{"count"}},
		{name: "validate", raw: base(map[string]any{"count": -1}), wantErr: []error{ErrFieldValue}, fields: []string{"count"}, substr: "must be >= 0"},
		{name: "float from int", raw: base(map[string]any{"ratio": 2}), want: with("ratio", 2.0)},
		{name: "bool", raw: base(map[string]any{"enabled": true}), want: with("enabled", true)},
		{name: "bool wrong", raw: base(map[string]any{"enabled": "yes"}), wantErr: []error{ErrFieldType}, fields: []string{"enabled"}},
		{name: "string wrong", raw: map[string]any{"path": 12}, wantErr: []error{ErrFieldType}, fields: []string{"path"}, substr: "quote the value"},
		{name: "enum ok", raw: base(map[string]any{"mode": "b"}), want: with("mode", "b")},
		{name: "enum bad", raw: base(map[string]any{"mode": "c"}), wantErr: []error{ErrFieldValue}, fields: []string{"mode"}, substr: "use one of a, b"},
		{name: "duration string", raw: base(map[string]any{"every": "250ms"}), want: with("every", 250*time.Millisecond)},
		{name: "duration int ms", raw: base(map[string]any{"every": 1500}), want: with("every", 1500*time.Millisecond)},
		{name: "duration json float ms", raw: base(map[string]any{"every": 20.0}), want: with("every", 20*time.Millisecond)},
		{name: "duration bad", raw: base(map[string]any{"every": "soon"}), wantErr: []error{ErrFieldType}, fields: []string{"every"}},
		{name: "expression ok", raw: base(map[string]any{"where": "value.n > 3 && key != ''"}), want: with("where", "value.n > 3 && key != ''")},
		{name: "expression bad", raw: base(map[string]any{"where": "value.n >"}), wantErr: []error{ErrFieldValue}, fields: []string{"where"}, substr: "does not compile"},
		{name: "string list", raw: base(map[string]any{"fields": []any{"a", "b"}}), want: with("fields", []string{"a", "b"})},
		{name: "string list bad elem", raw: base(map[string]any{"fields": []any{"a", 1}}), wantErr: []error{ErrFieldType}, fields: []string{"fields"}, substr: "element 1"},
		{name: "string map", raw: base(map[string]any{"select": map[string]any{"x": "a + 1"}}), want: with("select", map[string]string{"x": "a + 1"})},
		{name: "string map bad", raw: base(map[string]any{"select": map[string]any{"x": 1}}), wantErr: []error{ErrFieldType}, fields: []string{"select"}},
		{name: "null is absent", raw: base(map[string]any{"count": nil}), want: defaults},
		{name: "missing required", raw: map[string]any{}, wantErr: []error{ErrMissingField}, fields: []string{"path"}},
		{
			name:    "unknown field lists known",
			raw:     base(map[string]any{"cuont": 3}),
			wantErr: []error{ErrUnknownField}, fields: []string{"cuont"},
			substr: "known fields: count, enabled, every, fields, mode, path, ratio, select, where",
		},
		{
			name:    "all errors at once",
			raw:     map[string]any{"zz": 1, "count": "x", "mode": "q"},
			wantErr: []error{ErrUnknownField, ErrFieldType, ErrMissingField, ErrFieldValue},
			fields:  []string{"zz", "count", "path", "mode"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := testType().DecodeConfig(tc.raw)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("DecodeConfig: %v", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got %#v\nwant %#v", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("DecodeConfig succeeded with %#v, want error", got)
			}
			fes := FieldErrors(err)
			if len(fes) != len(tc.wantErr) {
				t.Fatalf("got %d field errors (%v), want %d", len(fes), err, len(tc.wantErr))
			}
			for i, fe := range fes {
				if !errors.Is(fe, tc.wantErr[i]) {
					t.Errorf("error %d = %v, want it to wrap %v", i, fe, tc.wantErr[i])
				}
				if fe.Field != tc.fields[i] {
					t.Errorf("error %d names field %q, want %q", i, fe.Field, tc.fields[i])
				}
				if !strings.Contains(fe.Error(), fmt.Sprintf("field %q", tc.fields[i])) {
					t.Errorf("error %q does not name its field", fe.Error())
				}
			}
			if tc.substr != "" && !strings.Contains(err.Error(), tc.substr) {
				t.Errorf("error %q does not contain %q", err, tc.substr)
			}
		})
	}
}

func TestDecodeConfigBadDefault(t *testing.T) {
	typ := &OperatorType{Name: "broken", Fields: []Field{{Name: "n", Type: TypeInt, Default: "ten"}}}
	_, err := typ.DecodeConfig(nil)
	if err == nil || !strings.Contains(err.Error(), "bug in its registration") {
		t.Fatalf("got %v, want a registration bug error", err)
	}
}

func TestEncodeConfigRoundTrip(t *testing.T) {
	typ := testType()
	raws := []map[string]any{
		{"path": "/tmp/x"},
		{
			"path": "p", "count": int64(1) << 60, "ratio": 1e-9, "enabled": true, "mode": "b",
			"every": "1h2m3.5s", "where": "a in ['x']", "fields": []any{"a", "b"},
			"select": map[string]any{"k": "v", "z": "len(x)"},
		},
		{"path": "p", "fields": []any{}, "select": map[string]any{}},
	}
	for i, raw := range raws {
		cfg, err := typ.DecodeConfig(raw)
		if err != nil {
			t.Fatalf("case %d: DecodeConfig: %v", i, err)
		}
		b, err := typ.EncodeConfig(cfg)
		if err != nil {
			t.Fatalf("case %d: EncodeConfig: %v", i, err)
		}
		back, err := typ.DecodeConfigJSON(b)
		if err != nil {
			t.Fatalf("case %d: DecodeConfigJSON(%s): %v", i, b, err)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Fatalf("case %d: round trip through %s\ngot  %#v\nwant %#v", i, b, back, cfg)
		}
		// Plain encoding/json (float64 numbers) also reads back.
		var plain map[string]any
		if err := json.Unmarshal(b, &plain); err != nil {
			t.Fatal(err)
		}
		if _, err := typ.DecodeConfig(plain); err != nil {
			t.Fatalf("case %d: DecodeConfig(plain json): %v", i, err)
		}
	}
	if !strings.Contains(string(mustEncode(t, typ, Config{"every": 1500 * time.Millisecond})), `"every":"1.5s"`) {
		t.Fatal("durations are not encoded as strings")
	}
}

func mustEncode(t *testing.T, typ *OperatorType, cfg Config) []byte {
	t.Helper()
	b, err := typ.EncodeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncodeConfigErrors(t *testing.T) {
	typ := testType()
	if _, err := typ.EncodeConfig(Config{"nope": 1}); !errors.Is(err, ErrUnknownField) {
		t.Fatalf("unknown key: got %v", err)
	}
	if _, err := typ.EncodeConfig(Config{"every": "1s"}); !errors.Is(err, ErrFieldType) {
		t.Fatalf("duration as string: got %v", err)
	}
}

// An optional field without default that is absent decodes to its zero
// value without Validate or Enum; encoding must not turn that into a present
// value that fails them when the runtime decodes the stored JSON (the
// tumbling window with only size failed at deploy on slide "0s").
func TestEncodeConfigKeepsUnsetFieldsUnset(t *testing.T) {
	atLeast1ms := func(v any) error {
		if v.(time.Duration) < time.Millisecond {
			return errors.New("must be at least 1ms")
		}
		return nil
	}
	typ := &OperatorType{Name: "win", Kind: KindOperator, Fields: []Field{
		{Name: "size", Type: TypeDuration, Required: true, Validate: atLeast1ms},
		{Name: "slide", Type: TypeDuration, Validate: atLeast1ms},
		{Name: "fn", Type: TypeString, Enum: []string{"sum", "max"}},
		{Name: "n", Type: TypeInt, Validate: func(v any) error {
			if v.(int64) == 0 {
				return errors.New("must not be 0")
			}
			return nil
		}},
		{Name: "by", Type: TypeStringList},
		{Name: "names", Type: TypeStringMap},
		{Name: "where", Type: TypeExpression},
		{Name: "zeroDefault", Type: TypeInt, Default: 0},
	}}
	for _, raw := range []map[string]any{
		{"size": "1m"},
		{"size": "1m", "slide": "10s", "fn": "max", "n": 3, "by": []any{}, "names": map[string]any{}},
		{"size": "1m", "by": []any{"a"}, "where": "x > 1", "zeroDefault": 0},
	} {
		cfg, err := typ.DecodeConfig(raw)
		if err != nil {
			t.Fatalf("DecodeConfig(%v): %v", raw, err)
		}
		b := mustEncode(t, typ, cfg)
		back, err := typ.DecodeConfigJSON(b)
		if err != nil {
			t.Fatalf("%v: DecodeConfigJSON(%s): %v", raw, b, err)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Fatalf("%v: round trip through %s\ngot  %#v\nwant %#v", raw, b, back, cfg)
		}
	}
	if b := string(mustEncode(t, typ, mustDecode(t, typ, map[string]any{"size": "1m"}))); b != `{"size":"1m0s","zeroDefault":0}` {
		t.Fatalf("only size set: encoded %s, want the unset optional fields left out and the default kept", b)
	}
}

func mustDecode(t *testing.T, typ *OperatorType, raw map[string]any) Config {
	t.Helper()
	cfg, err := typ.DecodeConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Instantiate is the deploy path: decode the stored JSON, then construct.
func TestInstantiate(t *testing.T) {
	errTooBig := errors.New("slide larger than size")
	typ := &OperatorType{Name: "win", Kind: KindOperator,
		Fields: []Field{{Name: "size", Type: TypeInt, Required: true}, {Name: "slide", Type: TypeInt}},
		NewOperator: func(cfg Config) (Operator, error) {
			if cfg.Int("slide") > cfg.Int("size") {
				return nil, errTooBig
			}
			return nil, nil
		}}
	if _, err := typ.Instantiate([]byte(`{"size":2}`)); err != nil {
		t.Fatalf("Instantiate: %v", err)
	}
	if _, err := typ.Instantiate([]byte(`{"size":2,"slide":3}`)); !errors.Is(err, errTooBig) {
		t.Fatalf("constructor error not returned: %v", err)
	}
	if _, err := typ.Instantiate([]byte(`{}`)); !errors.Is(err, ErrMissingField) {
		t.Fatalf("decode error not returned: %v", err)
	}
}
