package nexmark_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	nexq "github.com/flowrt/flow/examples/nexmark"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/connectors/nexmark"
)

// The queries of this file use the Go functions of functions.go; each test
// computes the query's definition by brute force over the model.

func registry(t *testing.T) *api.Registry {
	t.Helper()
	reg, err := nexq.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// lastRows runs q and keeps, per key (the fields named), the last row the
// job emitted: the final state of a query whose rows are updates.
func lastRows(t *testing.T, q string, rate int64, key ...string) []map[string]any {
	t.Helper()
	last := map[string]string{}
	for _, part := range runParts(t, q, registry(t), rate) {
		for _, l := range part {
			var row map[string]any
			if err := json.Unmarshal([]byte(l), &row); err != nil {
				t.Fatalf("output line %q: %v", l, err)
			}
			var k strings.Builder
			for _, f := range key {
				fmt.Fprintf(&k, "%v|", row[f])
			}
			last[k.String()] = l
		}
	}
	var lines []string
	for _, l := range last {
		lines = append(lines, l)
	}
	return decodeSorted(t, lines)
}

// winners is q9's definition: per auction, the bid of the highest price
// (then the earliest; then the lowest bidder) with dateTime in
// [auction.dateTime, auction.expires].
func winners(m model) map[int64]nexmark.Bid {
	byAuction := map[int64][]nexmark.Bid{}
	for _, b := range m.bids {
		byAuction[b.Auction] = append(byAuction[b.Auction], b)
	}
	out := map[int64]nexmark.Bid{}
	for _, a := range m.auctions {
		var best *nexmark.Bid
		for i, b := range byAuction[a.ID] {
			if b.DateTime < a.DateTime || b.DateTime > a.Expires {
				continue
			}
			if best == nil || b.Price > best.Price || b.Price == best.Price && (b.DateTime < best.DateTime || b.DateTime == best.DateTime && b.Bidder < best.Bidder) {
				best = &byAuction[a.ID][i]
			}
		}
		if best != nil {
			out[a.ID] = *best
		}
	}
	return out
}

func TestQ9WinningBids(t *testing.T) {
	m := generateAt(slowRate)
	w := winners(m)
	var want []map[string]any
	for _, a := range m.auctions {
		b, ok := w[a.ID]
		if !ok {
			continue
		}
		want = append(want, map[string]any{"id": a.ID, "itemName": a.ItemName, "description": a.Description, "initialBid": a.InitialBid,
			"reserve": a.Reserve, "dateTime": a.DateTime, "expires": a.Expires, "seller": a.Seller, "category": a.Category, "extra": a.Extra,
			"auction": b.Auction, "bidder": b.Bidder, "price": b.Price, "bid_dateTime": b.DateTime, "bid_extra": b.Extra})
	}
	nonEmpty(t, want, "auction with a bid in its run")
	compare(t, runAt(t, "q9", registry(t), slowRate), expected(t, want))
}

func TestQ4AveragePricePerCategory(t *testing.T) {
	m := generateAt(slowRate)
	w := winners(m)
	sum, n := map[int64]int64{}, map[int64]int64{}
	for _, a := range m.auctions {
		if b, ok := w[a.ID]; ok {
			sum[a.Category] += b.Price
			n[a.Category]++
		}
	}
	var want []map[string]any
	for c := range sum {
		want = append(want, map[string]any{"id": c, "final": sum[c] / n[c]})
	}
	if len(want) != 5 {
		t.Fatalf("%d categories with a winning bid, want 5", len(want))
	}
	compare(t, lastRows(t, "q4", slowRate, "id"), expected(t, want))
}

func rank(price int64) int {
	if price < 10000 {
		return 1
	}
	if price < 1000000 {
		return 2
	}
	return 3
}

func TestQ16ChannelStatistics(t *testing.T) {
	type group struct{ channel, day string }
	type stats struct {
		bids              [4]int64 // [0] total, [r] rank r
		bidders, auctions [4]map[int64]bool
		minute            string
	}
	all := map[group]*stats{}
	for _, b := range generate().bids {
		tm := time.UnixMilli(b.DateTime).UTC()
		g := group{b.Channel, tm.Format("2006-01-02")}
		s := all[g]
		if s == nil {
			s = &stats{}
			for i := range 4 {
				s.bidders[i], s.auctions[i] = map[int64]bool{}, map[int64]bool{}
			}
			all[g] = s
		}
		for _, i := range []int{0, rank(b.Price)} {
			s.bids[i]++
			s.bidders[i][b.Bidder] = true
			s.auctions[i][b.Auction] = true
		}
		s.minute = max(s.minute, tm.Format("15:04"))
	}
	var want []map[string]any
	for g, s := range all {
		want = append(want, map[string]any{"channel": g.channel, "day": g.day, "minute": s.minute,
			"total_bids": s.bids[0], "rank1_bids": s.bids[1], "rank2_bids": s.bids[2], "rank3_bids": s.bids[3],
			"total_bidders": len(s.bidders[0]), "rank1_bidders": len(s.bidders[1]), "rank2_bidders": len(s.bidders[2]), "rank3_bidders": len(s.bidders[3]),
			"total_auctions": len(s.auctions[0]), "rank1_auctions": len(s.auctions[1]), "rank2_auctions": len(s.auctions[2]), "rank3_auctions": len(s.auctions[3])})
	}
	compare(t, lastRows(t, "q16", 10000, "channel", "day"), expected(t, want))
}

func TestQ17AuctionStatistics(t *testing.T) {
	type group struct {
		auction int64
		day     string
	}
	type stats struct{ n, r1, r2, r3, lo, hi, sum int64 }
	all := map[group]*stats{}
	for _, b := range generate().bids {
		g := group{b.Auction, time.UnixMilli(b.DateTime).UTC().Format("2006-01-02")}
		s := all[g]
		if s == nil {
			s = &stats{lo: b.Price, hi: b.Price}
			all[g] = s
		}
		s.n++
		switch rank(b.Price) {
		case 1:
			s.r1++
		case 2:
			s.r2++
		case 3:
			s.r3++
		}
		s.lo, s.hi, s.sum = min(s.lo, b.Price), max(s.hi, b.Price), s.sum+b.Price
	}
	var want []map[string]any
	for g, s := range all {
		want = append(want, map[string]any{"auction": g.auction, "day": g.day, "total_bids": s.n, "rank1_bids": s.r1, "rank2_bids": s.r2, "rank3_bids": s.r3,
			"min_price": s.lo, "max_price": s.hi, "avg_price": s.sum / s.n, "sum_price": s.sum})
	}
	compare(t, lastRows(t, "q17", 10000, "auction", "day"), expected(t, want))
}

// TestQ12ProcessingTimeWindows: which window of processing time a bid
// falls in depends on when it is processed, so the test checks what does
// not: every row is a 10 s window aligned to 10 s, and the counts of each
// bidder's windows add up to the bidder's bids.
func TestQ12ProcessingTimeWindows(t *testing.T) {
	want := map[float64]float64{}
	for _, b := range generate().bids {
		want[float64(b.Bidder)]++
	}
	got := map[float64]float64{}
	for _, r := range runAt(t, "q12", registry(t), 10000) {
		start, end := r["starttime"].(float64), r["endtime"].(float64)
		if end-start != 10000 || int64(start)%10000 != 0 {
			t.Fatalf("row %v: not a 10 s window aligned to 10 s", r)
		}
		got[r["bidder"].(float64)] += r["bid_count"].(float64)
	}
	if len(got) != len(want) {
		t.Fatalf("%d bidders in the output, want %d", len(got), len(want))
	}
	for b, n := range want {
		if got[b] != n {
			t.Fatalf("bidder %v: windows count %v bids, want %v", b, got[b], n)
		}
	}
}

func TestQ5HotItems(t *testing.T) {
	// HOP(2 s, 10 s): window starts s (multiples of 2 s) with s <= ts < s+10 s.
	counts := map[int64]map[int64]int64{}
	for _, b := range generateAt(slowRate).bids {
		for s := floorTo(b.DateTime, 2000); s > b.DateTime-10000; s -= 2000 {
			if counts[s] == nil {
				counts[s] = map[int64]int64{}
			}
			counts[s][b.Auction]++
		}
	}
	var want []map[string]any
	for _, perAuction := range counts {
		var maxn int64
		for _, n := range perAuction {
			maxn = max(maxn, n)
		}
		for a, n := range perAuction {
			if n >= maxn {
				want = append(want, map[string]any{"auction": a, "num": n})
			}
		}
	}
	if len(want) <= len(counts) {
		t.Logf("no window with a tie for the most bids (%d rows, %d windows)", len(want), len(counts))
	}
	nonEmpty(t, want, "window")
	compare(t, runAt(t, "q5", registry(t), slowRate), expected(t, want))
}
