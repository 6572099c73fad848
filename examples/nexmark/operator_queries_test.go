package nexmark_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/connectors/nexmark"
)

// The queries of this file use the built-in operators the queries asked
// for (lookup, distinct, dedupe, top); each test computes the query's
// definition by brute force over the model.

// sideTable writes q13's side input, {"key": k, "value": ...} for k in
// 0..9999, and returns its path and the values by key.
func sideTable(t testing.TB) (string, map[int64]string) {
	t.Helper()
	values := map[int64]string{}
	var b strings.Builder
	for k := range int64(10000) {
		v := fmt.Sprintf("side-%d-%x", k, k*7919%10007)
		values[k] = v
		fmt.Fprintf(&b, "{\"key\":%d,\"value\":%q}\n", k, v)
	}
	path := filepath.Join(t.TempDir(), "side_input.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, values
}

func TestQ13BoundedSideInputJoin(t *testing.T) {
	path, values := sideTable(t)
	var want []map[string]any
	for _, b := range generate().bids {
		want = append(want, map[string]any{"auction": b.Auction, "bidder": b.Bidder, "price": b.Price, "dateTime": b.DateTime, "value": values[b.Auction%10000]})
	}
	var lines []string
	for _, part := range runPartsWith(t, "q13", api.Default, 10000, "operators.side.config.path="+path) {
		lines = append(lines, part...)
	}
	compare(t, decodeSorted(t, lines), expected(t, want))
}

func TestQ15BiddingStatistics(t *testing.T) {
	type stats struct {
		bids              [4]int64 // [0] total, [r] rank r
		bidders, auctions [4]map[int64]bool
	}
	days := map[string]*stats{}
	for _, b := range generate().bids {
		day := time.UnixMilli(b.DateTime).UTC().Format(time.DateOnly)
		s := days[day]
		if s == nil {
			s = &stats{}
			for i := range 4 {
				s.bidders[i], s.auctions[i] = map[int64]bool{}, map[int64]bool{}
			}
			days[day] = s
		}
		for _, i := range []int{0, rank(b.Price)} {
			s.bids[i]++
			s.bidders[i][b.Bidder] = true
			s.auctions[i][b.Auction] = true
		}
	}
	var want []map[string]any
	for day, s := range days {
		if s.bids[1] == 0 || s.bids[2] == 0 || s.bids[3] == 0 {
			t.Fatalf("day %s: bids per rank %v: the input leaves a rank empty, the test checks less than it should", day, s.bids)
		}
		want = append(want, map[string]any{"day": day,
			"total_bids": s.bids[0], "rank1_bids": s.bids[1], "rank2_bids": s.bids[2], "rank3_bids": s.bids[3],
			"total_bidders": len(s.bidders[0]), "rank1_bidders": len(s.bidders[1]), "rank2_bidders": len(s.bidders[2]), "rank3_bidders": len(s.bidders[3]),
			"total_auctions": len(s.auctions[0]), "rank1_auctions": len(s.auctions[1]), "rank2_auctions": len(s.auctions[2]), "rank3_auctions": len(s.auctions[3])})
	}
	compare(t, runAt(t, "q15", api.Default, 10000), expected(t, want))
}

// rowText is r rendered as expected renders it (sorted keys, numbers as
// JSON numbers), for comparing a job's row with a brute-force one.
func rowText(t *testing.T, r map[string]any) string {
	t.Helper()
	b, err := json.Marshal(expected(t, []map[string]any{r})[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func bidRow(b nexmark.Bid) map[string]any {
	return map[string]any{"auction": b.Auction, "bidder": b.Bidder, "price": b.Price, "channel": b.Channel, "url": b.URL, "dateTime": b.DateTime, "extra": b.Extra}
}

func TestQ18FindLastBid(t *testing.T) {
	type key struct{ bidder, auction int64 }
	latest := map[key][]nexmark.Bid{} // the bids of the latest dateTime
	updated := 0
	for _, b := range generate().bids {
		k := key{b.Bidder, b.Auction}
		switch l := latest[k]; {
		case len(l) == 0:
			latest[k] = []nexmark.Bid{b}
		case b.DateTime > l[0].DateTime:
			latest[k] = []nexmark.Bid{b}
			updated++
		case b.DateTime == l[0].DateTime:
			latest[k] = append(l, b)
		}
	}
	if updated == 0 {
		t.Fatal("no bidder bids twice on an auction in the input: the test checks no update")
	}
	got := lastRows(t, "q18", 10000, "bidder", "auction")
	if len(got) != len(latest) {
		t.Fatalf("%d (bidder, auction) rows, want %d", len(got), len(latest))
	}
	ties := 0
	for _, r := range got {
		k := key{int64(r["bidder"].(float64)), int64(r["auction"].(float64))}
		text := rowText(t, r)
		if len(latest[k]) > 1 {
			ties++
		}
		if !slices.ContainsFunc(latest[k], func(b nexmark.Bid) bool { return rowText(t, bidRow(b)) == text }) {
			t.Fatalf("bidder %d, auction %d: last row %s, want the bid of the latest dateTime: %v", k.bidder, k.auction, text, latest[k])
		}
	}
	t.Logf("%d keys, %d updated by a later bid, %d with a tie for the latest dateTime", len(latest), updated, ties)
}

func TestQ19AuctionTop10Price(t *testing.T) {
	byAuction := map[int64][]nexmark.Bid{}
	for _, b := range generate().bids {
		byAuction[b.Auction] = append(byAuction[b.Auction], b)
	}
	crowded := 0
	for _, bs := range byAuction {
		slices.SortFunc(bs, func(x, y nexmark.Bid) int { return int(y.Price - x.Price) })
		if len(bs) > 10 {
			crowded++
		}
	}
	if crowded == 0 {
		t.Fatal("no auction with more than 10 bids in the input: the test checks no eviction")
	}
	got := lastRows(t, "q19", 10000, "auction", "rank_number")
	ranks := map[int64][]bool{}
	for _, r := range got {
		a, rk := int64(r["auction"].(float64)), int(r["rank_number"].(float64))
		bs := byAuction[a]
		if rk < 1 || rk > min(10, len(bs)) {
			t.Fatalf("auction %d: rank_number %d, want 1..%d", a, rk, min(10, len(bs)))
		}
		if p := int64(r["price"].(float64)); p != bs[rk-1].Price {
			t.Fatalf("auction %d rank %d: price %d, want %d (prices by rank: %v)", a, rk, p, bs[rk-1].Price, bs[:min(10, len(bs))])
		}
		bid := maps(r)
		delete(bid, "rank_number")
		text := rowText(t, bid)
		if !slices.ContainsFunc(bs, func(b nexmark.Bid) bool { return rowText(t, bidRow(b)) == text }) {
			t.Fatalf("auction %d rank %d: row %s is no bid of the auction", a, rk, text)
		}
		if ranks[a] == nil {
			ranks[a] = make([]bool, 11)
		}
		ranks[a][rk] = true
	}
	if len(ranks) != len(byAuction) {
		t.Fatalf("%d auctions in the output, want %d", len(ranks), len(byAuction))
	}
	for a, seen := range ranks {
		for rk := 1; rk <= min(10, len(byAuction[a])); rk++ {
			if !seen[rk] {
				t.Fatalf("auction %d: no row of rank %d", a, rk)
			}
		}
	}
}

// maps is a shallow copy of r.
func maps(r map[string]any) map[string]any {
	c := make(map[string]any, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}
