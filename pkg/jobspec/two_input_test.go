package jobspec

import (
	"strings"
	"testing"

	"github.com/flowrt/flow/pkg/api"
)

// TestTwoInputSpecErrors: mistakes in a two-input operator's inputs get
// one clear line each.
func TestTwoInputSpecErrors(t *testing.T) {
	for _, tc := range []struct{ name, ops, want string }{
		{"three inputs", `  - {id: j, type: join, inputs: [a, b, c], keyBy: key}`,
			`operator "j": type "join" has two inputs, but 3 are listed: list two`},
		{"one input", `  - {id: j, type: join, inputs: [a], keyBy: key}`,
			`operator "j": type "join" has two inputs, but 1 are listed`},
		{"unkeyed input", `  - {id: j, type: interval-join, inputs: [{from: a, keyBy: key}, {from: b, partitioning: rebalance}], config: {lower: 0s, upper: 1s}}`,
			`operator "j": input "b" of keyed type "interval-join" has no key: give it keyBy (or partitioning: broadcast)`},
		{"no key at all", `  - {id: j, type: join, inputs: [a, b]}`,
			`type "join" is keyed and needs keyBy: add keyBy: <expression giving the key>, or a keyBy on each input`},
		{"misspelt from", `  - {id: j, type: join, inputs: [{form: a, keyBy: key}, b], keyBy: key}`,
			`inputs[0]: unknown key "form" (did you mean "from"?)`},
		{"keyBy and partitioning", `  - {id: j, type: join, inputs: [{from: a, keyBy: key}, {from: b, keyBy: key, partitioning: broadcast}]}`,
			`inputs[1]: partitioning conflicts with keyBy`},
		{"bad keyBy", `  - {id: j, type: join, inputs: [{from: a, keyBy: 'key +'}, {from: b, keyBy: key}]}`,
			`inputs[0]: keyBy: expression "key +"`},
		{"empty interval", `  - {id: j, type: interval-join, inputs: [a, b], keyBy: key, config: {lower: 5s, upper: 1s}}`,
			`lower 5s is above upper 1s`},
		{"second input to a one-input type", `  - {id: j, type: count, inputs: [{from: a, keyBy: key}, {from: b, keyBy: key}]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := "name: x\noperators:\n  - {id: a, type: datagen}\n  - {id: b, type: datagen}\n  - {id: c, type: datagen}\n" + tc.ops + "\n  - {id: out, type: print, inputs: [j, c]}\n"
			_, err := Parse([]byte(spec), "spec.yaml", api.Default, nil)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("a single-input type reads the union of its inputs: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
