package nexmark_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/connectors/nexmark"
	"github.com/flowrt/flow/pkg/flowtest"
)

// The queries of this file are specs of built-in operators only; each test
// computes the query's definition by brute force over the generator's
// model (nexmark.Generate), with none of the operators' code.

// model is the whole small input, by kind.
type model struct {
	persons  []nexmark.Person
	auctions []nexmark.Auction
	bids     []nexmark.Bid
}

// slowRate is the event-time rate (events per second) of the tests of
// windowed queries: 20,000 events then span 40 s, several 10 s windows and
// sessions.
const slowRate = 500

// runAt runs examples/nexmark/<q>.yaml as runQuery does, on registry reg,
// with the source's event-time rate set to rate.
func runAt(t *testing.T, q string, reg *api.Registry, rate int64) []map[string]any {
	t.Helper()
	var lines []string
	for _, part := range runParts(t, q, reg, rate) {
		lines = append(lines, part...)
	}
	return decodeSorted(t, lines)
}

// runParts runs q as runAt does and returns the lines of each part file
// (one per sink subtask: the order in which that subtask wrote them).
func runParts(t *testing.T, q string, reg *api.Registry, rate int64) [][]string {
	t.Helper()
	return runPartsWith(t, q, reg, rate)
}

// runPartsWith is runParts with more spec overrides (path=value).
func runPartsWith(t *testing.T, q string, reg *api.Registry, rate int64, overrides ...string) [][]string {
	t.Helper()
	spec, err := os.ReadFile(q + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	text := strings.Replace(string(spec), "type: blackhole", "type: file\n    config: {path: "+out+"}", 1)
	c := flowtest.Start(t, flowtest.Options{Registry: reg})
	id := c.SubmitSpec(text, append([]string{fmt.Sprintf("operators.events.config.count=%d", events), fmt.Sprintf("operators.events.config.rate=%d", rate)}, overrides...)...)
	c.AwaitStatus(id, flowtest.Finished, 2*time.Minute)
	parts, _ := filepath.Glob(filepath.Join(out, "part-*.jsonl"))
	var all [][]string
	for _, p := range parts {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		all = append(all, lines)
	}
	return all
}

func generate() model { return generateAt(10000) }

// generateAt is the input at an event-time rate of rate events/s.
func generateAt(rate int64) model {
	p := nexmark.Params{Rate: rate, BaseTime: nexmark.DefaultBaseTime, OutOfOrder: 1}
	var m model
	for n := range int64(events) {
		switch e := nexmark.Generate(&p, n); e.Kind {
		case nexmark.KindPerson:
			m.persons = append(m.persons, e.Person)
		case nexmark.KindAuction:
			m.auctions = append(m.auctions, e.Auction)
		case nexmark.KindBid:
			m.bids = append(m.bids, e.Bid)
		}
	}
	return m
}

// floorTo is t rounded down to a multiple of d (t >= 0 here).
func floorTo(t, d int64) int64 { return t - t%d }

func nonEmpty(t *testing.T, want []map[string]any, what string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("no %s in the input: the test checks nothing", what)
	}
}

func TestQ7HighestBid(t *testing.T) {
	bids := generateAt(slowRate).bids
	maxPrice := map[int64]int64{} // window start -> max price
	for _, b := range bids {
		s := floorTo(b.DateTime, 10000)
		maxPrice[s] = max(maxPrice[s], b.Price)
	}
	var want []map[string]any
	for s, m := range maxPrice {
		end := s + 10000
		for _, b := range bids {
			if b.Price == m && b.DateTime >= end-10000 && b.DateTime <= end {
				want = append(want, map[string]any{"auction": b.Auction, "price": b.Price, "bidder": b.Bidder, "dateTime": b.DateTime, "extra": b.Extra})
			}
		}
	}
	nonEmpty(t, want, "highest bid")
	compare(t, runAt(t, "q7", api.Default, slowRate), expected(t, want))
}

func TestQ8MonitorNewUsers(t *testing.T) {
	m := generateAt(slowRate)
	sellers := map[[2]int64]bool{} // (seller, window start)
	for _, a := range m.auctions {
		sellers[[2]int64{a.Seller, floorTo(a.DateTime, 10000)}] = true
	}
	var want []map[string]any
	for _, p := range m.persons {
		if s := floorTo(p.DateTime, 10000); sellers[[2]int64{p.ID, s}] {
			want = append(want, map[string]any{"id": p.ID, "name": p.Name, "stime": s})
		}
	}
	nonEmpty(t, want, "person selling in the window of their registration")
	compare(t, runAt(t, "q8", api.Default, slowRate), expected(t, want))
}

func TestQ10LogToFileSystem(t *testing.T) {
	var want []map[string]any
	for _, b := range generate().bids {
		tm := time.UnixMilli(b.DateTime).UTC()
		want = append(want, map[string]any{"auction": b.Auction, "bidder": b.Bidder, "price": b.Price, "dateTime": b.DateTime, "extra": b.Extra,
			"dt": tm.Format(time.DateOnly), "hm": tm.Format("15:04")})
	}
	compare(t, runQuery(t, "q10"), expected(t, want))
}

func TestQ11UserSessions(t *testing.T) {
	const gap = 10000
	times := map[int64][]int64{}
	for _, b := range generateAt(slowRate).bids {
		times[b.Bidder] = append(times[b.Bidder], b.DateTime)
	}
	var want []map[string]any
	for bidder, ts := range times {
		slices.Sort(ts)
		start, n := ts[0], int64(0)
		for i, x := range ts {
			if i > 0 && x > ts[i-1]+gap { // windows [t, t+gap] that touch merge
				want = append(want, map[string]any{"bidder": bidder, "bid_count": n, "starttime": start, "endtime": ts[i-1] + gap})
				start, n = x, 0
			}
			n++
		}
		want = append(want, map[string]any{"bidder": bidder, "bid_count": n, "starttime": start, "endtime": ts[len(ts)-1] + gap})
	}
	if len(want) <= len(times) {
		t.Fatal("no bidder with two sessions in the input: the test checks no session end")
	}
	compare(t, runAt(t, "q11", api.Default, slowRate), expected(t, want))
}

func TestQ14Calculation(t *testing.T) {
	var want []map[string]any
	for _, b := range generate().bids {
		p := 0.908 * float64(b.Price)
		if p <= 1000000 || p >= 50000000 {
			continue
		}
		kind := "otherTime"
		switch h := time.UnixMilli(b.DateTime).UTC().Hour(); {
		case h >= 8 && h <= 18:
			kind = "dayTime"
		case h <= 6 || h >= 20:
			kind = "nightTime"
		}
		want = append(want, map[string]any{"auction": b.Auction, "bidder": b.Bidder, "price": p, "bidTimeType": kind,
			"dateTime": b.DateTime, "extra": b.Extra, "c_counts": strings.Count(b.Extra, "c")})
	}
	nonEmpty(t, want, "bid in the price range")
	compare(t, runQuery(t, "q14"), expected(t, want))
}

func TestQ20ExpandBidWithAuction(t *testing.T) {
	m := generate()
	auctions := map[int64]nexmark.Auction{}
	for _, a := range m.auctions {
		if a.Category == 10 {
			auctions[a.ID] = a
		}
	}
	var want []map[string]any
	for _, b := range m.bids {
		a, ok := auctions[b.Auction]
		if !ok {
			continue
		}
		want = append(want, map[string]any{"auction": b.Auction, "bidder": b.Bidder, "price": b.Price, "channel": b.Channel, "url": b.URL,
			"bid_dateTime": b.DateTime, "bid_extra": b.Extra, "itemName": a.ItemName, "description": a.Description,
			"initialBid": a.InitialBid, "reserve": a.Reserve, "auction_dateTime": a.DateTime, "expires": a.Expires,
			"seller": a.Seller, "category": a.Category, "auction_extra": a.Extra})
	}
	nonEmpty(t, want, "bid on a category-10 auction")
	compare(t, runQuery(t, "q20"), expected(t, want))
}

func TestQ21AddChannelID(t *testing.T) {
	re := regexp.MustCompile(`(&|^)channel_id=([^&]*)`)
	ids := map[string]string{"apple": "0", "google": "1", "facebook": "2", "baidu": "3"}
	var want []map[string]any
	for _, b := range generate().bids {
		id, known := ids[strings.ToLower(b.Channel)]
		if !known {
			m := re.FindStringSubmatch(b.URL)
			if m == nil {
				continue
			}
			id = m[2]
		}
		want = append(want, map[string]any{"auction": b.Auction, "bidder": b.Bidder, "price": b.Price, "channel": b.Channel, "channel_id": id})
	}
	compare(t, runQuery(t, "q21"), expected(t, want))
}

func TestQ22GetURLDirectories(t *testing.T) {
	var want []map[string]any
	for _, b := range generate().bids {
		parts := strings.Split(b.URL, "/")
		dir := func(i int) any {
			if i < len(parts) {
				return parts[i]
			}
			return nil
		}
		want = append(want, map[string]any{"auction": b.Auction, "bidder": b.Bidder, "price": b.Price, "channel": b.Channel,
			"dir1": dir(3), "dir2": dir(4), "dir3": dir(5)})
	}
	compare(t, runQuery(t, "q22"), expected(t, want))
}
