// Package nexmark_test checks the Nexmark queries of examples/nexmark: each
// spec runs on a real in-process cluster (flowtest) over a small generated
// input, and its output must equal a brute-force computation of the query's
// definition over the generator's model (nexmark.Generate), not over the
// job's JSON.
package nexmark_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin"
	"github.com/flowrt/flow/pkg/connectors/nexmark"
	"github.com/flowrt/flow/pkg/flowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// events is the small input every query runs over.
const events = 20000

// runQuery runs examples/nexmark/<q>.yaml over events events with its sink
// replaced by a file sink, and returns the output records as JSON objects,
// sorted by their text.
func runQuery(t *testing.T, q string) []map[string]any {
	t.Helper()
	spec, err := os.ReadFile(q + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	text := strings.Replace(string(spec), "type: blackhole", "type: file\n    config: {path: "+out+"}", 1)
	c := flowtest.Start(t, flowtest.Options{Registry: api.Default})
	id := c.SubmitSpec(text, fmt.Sprintf("operators.events.config.count=%d", events))
	c.AwaitStatus(id, flowtest.Finished, 2*time.Minute)
	parts, _ := filepath.Glob(filepath.Join(out, "part-*.jsonl"))
	var lines []string
	for _, p := range parts {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
	}
	return decodeSorted(t, lines)
}

func decodeSorted(t *testing.T, lines []string) []map[string]any {
	t.Helper()
	sort.Strings(lines)
	out := make([]map[string]any, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &out[i]); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
	}
	return out
}

// expected renders brute-force rows like the job's output (JSON objects),
// sorted the same way.
func expected(t *testing.T, rows []map[string]any) []map[string]any {
	t.Helper()
	lines := make([]string, len(rows))
	for i, r := range rows {
		b, err := json.Marshal(r) // sorted keys, as select writes them
		if err != nil {
			t.Fatal(err)
		}
		lines[i] = string(b)
	}
	return decodeSorted(t, lines)
}

// bids is every bid of the input, from the model.
func bids() []nexmark.Bid {
	p := nexmark.Params{Rate: 10000, BaseTime: nexmark.DefaultBaseTime, OutOfOrder: 1}
	var out []nexmark.Bid
	for n := range int64(events) {
		if e := nexmark.Generate(&p, n); e.Kind == nexmark.KindBid {
			out = append(out, e.Bid)
		}
	}
	return out
}

func compare(t *testing.T, got, want []map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d output rows, want %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("row %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func TestQ0PassThrough(t *testing.T) {
	var want []map[string]any
	for _, b := range bids() {
		want = append(want, map[string]any{"auction": b.Auction, "bidder": b.Bidder, "price": b.Price, "dateTime": b.DateTime, "extra": b.Extra})
	}
	if len(want) != events*46/50 {
		t.Fatalf("model gives %d bids in %d events", len(want), events)
	}
	compare(t, runQuery(t, "q0"), expected(t, want))
}

func TestQ1CurrencyConversion(t *testing.T) {
	var want []map[string]any
	for _, b := range bids() {
		want = append(want, map[string]any{"auction": b.Auction, "bidder": b.Bidder, "price": 0.908 * float64(b.Price), "dateTime": b.DateTime, "extra": b.Extra})
	}
	compare(t, runQuery(t, "q1"), expected(t, want))
}

func TestQ2Selection(t *testing.T) {
	var want []map[string]any
	for _, b := range bids() {
		if b.Auction%123 == 0 {
			want = append(want, map[string]any{"auction": b.Auction, "price": b.Price})
		}
	}
	if len(want) == 0 {
		t.Fatal("no bid on an auction id divisible by 123 in the input: the test checks nothing")
	}
	compare(t, runQuery(t, "q2"), expected(t, want))
}

func TestQ3LocalItemSuggestion(t *testing.T) {
	p := nexmark.Params{Rate: 10000, BaseTime: nexmark.DefaultBaseTime, OutOfOrder: 1}
	persons := map[int64]nexmark.Person{}
	var auctions []nexmark.Auction
	for n := range int64(events) {
		switch e := nexmark.Generate(&p, n); e.Kind {
		case nexmark.KindPerson:
			if s := e.Person.State; s == "OR" || s == "ID" || s == "CA" {
				persons[e.Person.ID] = e.Person
			}
		case nexmark.KindAuction:
			if e.Auction.Category == 10 {
				auctions = append(auctions, e.Auction)
			}
		}
	}
	var want []map[string]any
	for _, a := range auctions {
		if p, ok := persons[a.Seller]; ok {
			want = append(want, map[string]any{"name": p.Name, "city": p.City, "state": p.State, "id": a.ID})
		}
	}
	if len(want) == 0 {
		t.Fatal("no category-10 auction of a seller in OR, ID or CA in the input: the test checks nothing")
	}
	compare(t, runQuery(t, "q3"), expected(t, want))
}
