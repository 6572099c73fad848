package kafka

import (
	"encoding/json"
	"strings"
	"testing"
)

var validCases = []string{
	`{}`, `[]`, `{"a":1}`, ` {"a" : [1, 2.5, -3e10, 0, -0.0, 1E+2, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"]} `,
	`"s"`, `0`, `-1`, `1.5e-3`, `null`, `true`, `[[[]]]`, `{"a":{"b":{}}}`, "{\"\xff\":1}",
	``, ` `, `{`, `}`, `[`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{a:1}`, `{'a':1}`, `01`, `1.`, `.5`, `-`, `1e`, `1e+`,
	`+1`, `tru`, `nul`, `"abc`, "\"a\x01\"", `"\x"`, `"\u12"`, `"\u12g4"`, `{} {}`, `1 2`, `{"a":1}x`, `[1 2]`, `{"a" 1}`, `NaN`, `Infinity`,
	`[` + strings.Repeat("[", 200) + strings.Repeat("]", 201), `{"a":[1,{"b":null}],"c":"d"}`, "\t[\r\n]\n",
}

// validJSON agrees with encoding/json.Valid.
func TestValidJSON(t *testing.T) {
	for _, c := range validCases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%q) = %v, json.Valid says %v", c, got, want)
		}
	}
	if validJSON([]byte(strings.Repeat("[", maxDepth+10) + strings.Repeat("]", maxDepth+10))) {
		t.Error("nesting deeper than maxDepth accepted")
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1000 {
			return
		}
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}
