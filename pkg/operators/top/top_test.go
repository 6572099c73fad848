package top_test

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"go.uber.org/goleak"

	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/flowtest"
	"github.com/flowrt/flow/pkg/operators/internal/optest"
	"github.com/flowrt/flow/pkg/operators/internal/ranked"
	"github.com/flowrt/flow/pkg/operators/top"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		raw  map[string]any
		want string
	}{
		{map[string]any{"by": "value"}, "n"},
		{map[string]any{"n": 0, "by": "value"}, "use 1 to 1000"},
		{map[string]any{"n": 1001, "by": "value"}, "use 1 to 1000"},
		{map[string]any{"n": 3}, "by"},
		{map[string]any{"n": 3, "by": "value +"}, "by"},
		{map[string]any{"n": 3, "by": "value", "order": "up"}, "order"},
		{map[string]any{"n": 3, "by": "value", "rankField": ""}, "rankField"},
		{map[string]any{"n": 3, "by": "value", "window": "100us"}, "1ms"},
	} {
		if err := optest.ConfigError(t, top.Type(), tc.raw); !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %v: error %q does not mention %q", tc.raw, err, tc.want)
		}
	}
}

// row is one output row of the operator, by the datagen record it is.
type row struct {
	Key       string
	Start     int64
	Rank, Seq int64
}

func rows(t *testing.T, out []map[string]any) []row {
	t.Helper()
	rs := make([]row, len(out))
	for i, m := range out {
		rs[i] = row{Key: m["key"].(string), Rank: int64(m["rank"].(float64)), Seq: int64(m["seq"].(float64))}
		if s, ok := m["start"]; ok {
			rs[i].Start = int64(s.(float64))
			if int64(m["end"].(float64)) != rs[i].Start+100 {
				t.Fatalf("row %v: end is not start + 100ms", m)
			}
		}
	}
	return rs
}

// rank sorts recs by value, largest first, ties by their bytes: sorted
// by the test's own comparison, not the operator's Insert.
func rank(recs []optest.Rec) {
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].Value != recs[j].Value {
			return recs[i].Value > recs[j].Value
		}
		return bytes.Compare(recs[i].Raw, recs[j].Raw) < 0
	})
}

// bruteWindowed is every window's first n records per key.
func bruteWindowed(recs []optest.Rec, n int, size int64) []row {
	groups := map[row][]optest.Rec{}
	for _, r := range recs {
		g := row{Key: r.Key, Start: r.TS - r.TS%size}
		groups[g] = append(groups[g], r)
	}
	var out []row
	for g, rs := range groups {
		rank(rs)
		for i := range min(n, len(rs)) {
			out = append(out, row{Key: g.Key, Start: g.Start, Rank: int64(i + 1), Seq: rs[i].Seq})
		}
	}
	return out
}

// bruteContinuous replays the records in sequence order (each key's
// arrival order): after each, the key's records so far are sorted again;
// when the new one is among the first n at rank r, ranks r..m are emitted.
func bruteContinuous(recs []optest.Rec, n int) []row {
	seen := map[string][]optest.Rec{}
	var out []row
	for _, r := range recs {
		rs := append(seen[r.Key], r)
		rank(rs)
		seen[r.Key] = rs
		at := -1
		for i := range rs {
			if rs[i].Seq == r.Seq {
				at = i
			}
		}
		if at >= n {
			continue
		}
		for i := at; i < min(n, len(rs)); i++ {
			out = append(out, row{Key: r.Key, Rank: int64(i + 1), Seq: rs[i].Seq})
		}
	}
	return out
}

func sameRows(t *testing.T, what string, got, want []row) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: the brute force gives no rows: the test checks nothing", what)
	}
	count := map[row]int{}
	for _, r := range want {
		count[r]++
	}
	for _, r := range got {
		count[r]--
	}
	var diffs []string
	for r, n := range count {
		if n != 0 {
			diffs = append(diffs, fmt.Sprintf("%+v x%d", r, n))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s: %d rows, want %d; %d differ (x>0 missing, x<0 extra), e.g. %s", what, len(got), len(want), len(diffs), strings.Join(diffs[:min(5, len(diffs))], "; "))
	}
}

func spec(cfg, backend, out string, par int, src string) string {
	return fmt.Sprintf(`name: top
parallelism: 2
operators:
%s  - id: top
    uid: top
    type: top
    inputs: [gen]
    keyBy: key
    parallelism: %d
    config: %s
  - {id: out, uid: out, type: file, inputs: [top], config: {path: %s}}
stateBackend: {type: %s}
`, src, par, cfg, out, backend)
}

// TestTopBruteForce: windowed and continuous top 3 per key equal a
// brute-force ranking, on both backends.
func TestTopBruteForce(t *testing.T) {
	const n, keys, count = 3, 15, 3000
	recs := optest.Gen(t, 1, keys, count, 0)
	c := flowtest.Start(t, flowtest.Options{Slots: 8})
	for _, backend := range []string{"heap", "pebble"} {
		out := t.TempDir()
		optest.Run(t, c, spec("{n: 3, by: value, window: 100ms}", backend, out, 2, optest.Source(1, keys, count, 0)))
		sameRows(t, backend+" windowed", rows(t, optest.Lines(t, out)), bruteWindowed(recs, n, 100))

		out = t.TempDir()
		optest.Run(t, c, spec("{n: 3, by: value}", backend, out, 2, optest.Source(1, keys, count, 0)))
		sameRows(t, backend+" continuous", rows(t, optest.Lines(t, out)), bruteContinuous(recs, n))
	}
}

// TestTopAscending: order asc keeps the smallest values.
func TestTopAscending(t *testing.T) {
	const keys, count = 5, 500
	recs := optest.Gen(t, 4, keys, count, 0)
	for i := range recs {
		recs[i].Value = -recs[i].Value // ascending by value = descending by -value
	}
	c := flowtest.Start(t, flowtest.Options{Slots: 4})
	out := t.TempDir()
	optest.Run(t, c, spec("{n: 2, by: value, order: asc, window: 100ms}", "heap", out, 1, optest.Source(4, keys, count, 0)))
	sameRows(t, "ascending", rows(t, optest.Lines(t, out)), bruteWindowed(recs, 2, 100))
}

// TestTopRescale stops each mode with a savepoint and restores it at
// another parallelism: both runs' output is exactly an uninterrupted
// run's (state restored by key group, nothing lost or emitted twice).
func TestTopRescale(t *testing.T) {
	const keys, count, rate = 12, 9000, 3000
	recs := optest.Gen(t, 2, keys, count, rate)
	c := flowtest.Start(t, flowtest.Options{TaskManagers: 2, Slots: 6})
	for _, tc := range []struct {
		backend, cfg string
		want         []row
	}{
		{"pebble", "{n: 4, by: value, window: 100ms}", bruteWindowed(recs, 4, 100)},
		{"heap", "{n: 4, by: value}", bruteContinuous(recs, 4)},
		{"pebble", "{n: 4, by: value}", bruteContinuous(recs, 4)},
	} {
		out := t.TempDir()
		optest.Rescaled(t, c, func(par int) string {
			return spec(tc.cfg, tc.backend, out, par, optest.Source(2, keys, count, rate))
		}, "top", 3000)
		sameRows(t, tc.backend+" "+tc.cfg+" over a rescale", rows(t, optest.Lines(t, out)), tc.want)
	}
}

func TestInsert(t *testing.T) {
	var es []ranked.Entry
	for i, v := range []float64{5, 1, 9, 5, 7, 3} {
		var at int
		es, at = ranked.Insert(es, ranked.Entry{V: v, Row: []byte{byte('a' + i)}}, 3, true)
		_ = at
	}
	var got []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%g%s", e.V, e.Row))
	}
	if s := strings.Join(got, " "); s != "9c 7e 5a" {
		t.Fatalf("top 3 of 5a 1b 9c 5d 7e 3f: %s, want 9c 7e 5a", s)
	}
	if _, at := ranked.Insert(es, ranked.Entry{V: 1}, 3, true); at != -1 {
		t.Fatalf("a row below a full top 3 was inserted at %d", at)
	}
}

func TestNotObject(t *testing.T) {
	if _, err := ranked.AppendWith(nil, []byte(`[1]`), []byte(`"rank":1`)); !errors.Is(err, ranked.ErrNotObject) {
		t.Fatalf("array row: %v, want ErrNotObject", err)
	}
	for in, want := range map[string]string{`{}`: `{"rank":1}`, ` {"a":1} `: `{"a":1,"rank":1}`} {
		b, err := ranked.AppendWith(nil, []byte(in), []byte(`"rank":1`))
		if err != nil || string(b) != want {
			t.Fatalf("%s: %s %v, want %s", in, b, err, want)
		}
	}
}
