// Package nexmark holds the Go parts of the Nexmark queries of this
// directory: typed keyed process functions (the public SDK, pkg/api/typed)
// for the queries whose aggregation no built-in operator computes. The
// specs (qN.yaml) use them by type name; Register adds them to a registry,
// and Registry is the stock registry with them.
//
//   - nexmark-winning-bid (q4, q9): per auction, the highest bid between
//     its start and its expiry, emitted once when the watermark passes the
//     expiry (the built-in reduce gives the max price, not the bid).
//   - nexmark-auction-day-stats (q17): per auction and day, bid counts by
//     price rank, min, max, sum and average, updated on every bid (the
//     built-in reduce computes one aggregate, without filters).
//   - nexmark-channel-day-stats (q16): per channel and day, bid counts and
//     distinct bidder and auction counts by price rank, updated on every bid
//     (no built-in counts distinct values).
//   - nexmark-hot-items (q5): per sliding window, the auctions with the
//     most bids, from the built-in window's counts (a join of the counts
//     with their maximum would work with built-ins, but the interval join
//     stores the rows of one key and timestamp, all of a window's counts, in
//     one state entry rewritten on every row: quadratic in the window's
//     auctions).
//   - nexmark-proctime-window (q12): bids per bidder per 10 s tumbling window
//     of processing time (the built-in window is event time only).
package nexmark

import (
	"math"
	"strconv"
	"time"

	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/api/typed"
	_ "github.com/flowrt/flow/pkg/builtin" // the built-in operator library, in api.Default
)

// Bid is a bid event as the nexmark source writes it.
type Bid struct {
	Auction  int64  `json:"auction"`
	Bidder   int64  `json:"bidder"`
	Price    int64  `json:"price"`
	Channel  string `json:"channel"`
	URL      string `json:"url"`
	DateTime int64  `json:"dateTime"`
	Extra    string `json:"extra"`
}

// Auction is an auction event as the nexmark source writes it.
type Auction struct {
	ID          int64  `json:"id"`
	ItemName    string `json:"itemName"`
	Description string `json:"description"`
	InitialBid  int64  `json:"initialBid"`
	Reserve     int64  `json:"reserve"`
	DateTime    int64  `json:"dateTime"`
	Expires     int64  `json:"expires"`
	Seller      int64  `json:"seller"`
	Category    int64  `json:"category"`
	Extra       string `json:"extra"`
}

// BidAuction is a row of the join of bids (left) and auctions (right).
type BidAuction struct {
	Left  Bid     `json:"left"`
	Right Auction `json:"right"`
}

// WinningBid is q9's row: the auction's fields and its winning bid's.
type WinningBid struct {
	Auction
	BidAuction  int64  `json:"auction"`
	Bidder      int64  `json:"bidder"`
	Price       int64  `json:"price"`
	BidDateTime int64  `json:"bid_dateTime"`
	BidExtra    string `json:"bid_extra"`
}

// Better reports whether bid a ranks before bid b in q9's ORDER BY price
// DESC, dateTime ASC (ties, which the query leaves open, go to the lower
// bidder id, so that the result is deterministic).
func Better(a, b Bid) bool {
	if a.Price != b.Price {
		return a.Price > b.Price
	}
	if a.DateTime != b.DateTime {
		return a.DateTime < b.DateTime
	}
	return a.Bidder < b.Bidder
}

// winningBid keeps each auction's best bid until its expiry.
type winningBid struct {
	typed.Base[WinningBid]
	best *api.ValueState[BidAuction]
}

func (f *winningBid) Open(ctx api.Context) (err error) {
	f.best, err = typed.Value[BidAuction](ctx, "best")
	return err
}

func (f *winningBid) ProcessElement(ctx *typed.Context[WinningBid], in BidAuction) error {
	if in.Left.DateTime < in.Right.DateTime || in.Left.DateTime > in.Right.Expires {
		return nil // outside the auction's run
	}
	cur, ok, err := f.best.Lookup()
	if err != nil {
		return err
	}
	if !ok {
		if err := ctx.Timers().RegisterEventTime(in.Right.Expires); err != nil {
			return err
		}
	} else if !Better(in.Left, cur.Left) {
		return nil
	}
	return f.best.Update(in)
}

func (f *winningBid) OnTimer(ctx *typed.Context[WinningBid], _ typed.Timer) error {
	w, ok, err := f.best.Lookup()
	if err != nil || !ok {
		return err
	}
	if err := f.best.Clear(); err != nil {
		return err
	}
	b := w.Left
	return ctx.Emit(WinningBid{Auction: w.Right, BidAuction: b.Auction, Bidder: b.Bidder, Price: b.Price, BidDateTime: b.DateTime, BidExtra: b.Extra})
}

// Rank is q16's and q17's price class: 1 below 10,000, 2 below 1,000,000,
// 3 from there.
func Rank(price int64) int {
	switch {
	case price < 10000:
		return 1
	case price < 1000000:
		return 2
	}
	return 3
}

// dayOf formats ms as yyyy-MM-dd (UTC), caching the last day.
type dayOf struct {
	day  int64
	text string
}

func (d *dayOf) of(ms int64) string {
	day := ms / 86400000
	if ms < 0 && ms%86400000 != 0 {
		day--
	}
	if d.text == "" || day != d.day {
		d.day, d.text = day, time.UnixMilli(ms).UTC().Format(time.DateOnly)
	}
	return d.text
}

// minuteOf formats ms as HH:mm (UTC), caching the last minute.
type minuteOf struct {
	minute int64
	text   string
}

func (m *minuteOf) of(ms int64) string {
	if n := ms / 60000; m.text == "" || n != m.minute {
		m.minute, m.text = n, time.UnixMilli(ms).UTC().Format("15:04")
	}
	return m.text
}

// AuctionDay is q17's row.
type AuctionDay struct {
	Auction   int64  `json:"auction"`
	Day       string `json:"day"`
	TotalBids int64  `json:"total_bids"`
	Rank1Bids int64  `json:"rank1_bids"`
	Rank2Bids int64  `json:"rank2_bids"`
	Rank3Bids int64  `json:"rank3_bids"`
	MinPrice  int64  `json:"min_price"`
	MaxPrice  int64  `json:"max_price"`
	AvgPrice  int64  `json:"avg_price"`
	SumPrice  int64  `json:"sum_price"`
}

// auctionDayStats aggregates the bids of each auction (the key) per day.
type auctionDayStats struct {
	typed.Base[AuctionDay]
	days *api.MapState[string, AuctionDay]
	day  dayOf
}

func (f *auctionDayStats) Open(ctx api.Context) (err error) {
	f.days, err = typed.Map[string, AuctionDay](ctx, "days")
	return err
}

func (f *auctionDayStats) ProcessElement(ctx *typed.Context[AuctionDay], b Bid) error {
	day := f.day.of(b.DateTime)
	s, ok, err := f.days.Get(day)
	if err != nil {
		return err
	}
	if !ok {
		s = AuctionDay{Auction: b.Auction, Day: day, MinPrice: math.MaxInt64, MaxPrice: math.MinInt64}
	}
	s.TotalBids++
	switch Rank(b.Price) {
	case 1:
		s.Rank1Bids++
	case 2:
		s.Rank2Bids++
	default:
		s.Rank3Bids++
	}
	s.MinPrice, s.MaxPrice = min(s.MinPrice, b.Price), max(s.MaxPrice, b.Price)
	s.SumPrice += b.Price
	s.AvgPrice = s.SumPrice / s.TotalBids // AVG of a BIGINT is a BIGINT
	if err := f.days.Put(day, s); err != nil {
		return err
	}
	return ctx.Emit(s)
}

// ChannelDay is q16's row.
type ChannelDay struct {
	Channel       string `json:"channel"`
	Day           string `json:"day"`
	Minute        string `json:"minute"`
	TotalBids     int64  `json:"total_bids"`
	Rank1Bids     int64  `json:"rank1_bids"`
	Rank2Bids     int64  `json:"rank2_bids"`
	Rank3Bids     int64  `json:"rank3_bids"`
	TotalBidders  int64  `json:"total_bidders"`
	Rank1Bidders  int64  `json:"rank1_bidders"`
	Rank2Bidders  int64  `json:"rank2_bidders"`
	Rank3Bidders  int64  `json:"rank3_bidders"`
	TotalAuctions int64  `json:"total_auctions"`
	Rank1Auctions int64  `json:"rank1_auctions"`
	Rank2Auctions int64  `json:"rank2_auctions"`
	Rank3Auctions int64  `json:"rank3_auctions"`
}

// channelDayStats aggregates the bids of each channel (the key) per day.
// seen maps (day, 'b' or 'a', bidder or auction id) to the ranks (bits 1-3)
// that id was counted in already.
type channelDayStats struct {
	typed.Base[ChannelDay]
	days   *api.MapState[string, ChannelDay]
	seen   *api.MapState[string, uint8]
	day    dayOf
	minute minuteOf
	buf    []byte
}

func (f *channelDayStats) Open(ctx api.Context) (err error) {
	if f.days, err = typed.Map[string, ChannelDay](ctx, "days"); err != nil {
		return err
	}
	f.seen, err = typed.Map[string, uint8](ctx, "seen")
	return err
}

// distinct records that id (kind 'b' or 'a') bid in rank on day; it
// returns whether it is new for the day and for the rank.
func (f *channelDayStats) distinct(day string, kind byte, id int64, rank int) (newDay, newRank bool, err error) {
	f.buf = append(append(append(f.buf[:0], day...), kind), strconv.FormatInt(id, 10)...)
	k := string(f.buf)
	m, ok, err := f.seen.Get(k)
	if err != nil {
		return false, false, err
	}
	bit := uint8(1) << rank
	if m&bit != 0 {
		return false, false, nil
	}
	return !ok, true, f.seen.Put(k, m|bit)
}

func (f *channelDayStats) ProcessElement(ctx *typed.Context[ChannelDay], b Bid) error {
	day := f.day.of(b.DateTime)
	s, ok, err := f.days.Get(day)
	if err != nil {
		return err
	}
	if !ok {
		s = ChannelDay{Channel: b.Channel, Day: day}
	}
	if m := f.minute.of(b.DateTime); m > s.Minute {
		s.Minute = m // max(HH:mm) of the day
	}
	rank := Rank(b.Price)
	s.TotalBids++
	newBidder, newRankBidder, err := f.distinct(day, 'b', b.Bidder, rank)
	if err != nil {
		return err
	}
	newAuction, newRankAuction, err := f.distinct(day, 'a', b.Auction, rank)
	if err != nil {
		return err
	}
	if newBidder {
		s.TotalBidders++
	}
	if newAuction {
		s.TotalAuctions++
	}
	switch rank {
	case 1:
		s.Rank1Bids++
		s.Rank1Bidders += b2i(newRankBidder)
		s.Rank1Auctions += b2i(newRankAuction)
	case 2:
		s.Rank2Bids++
		s.Rank2Bidders += b2i(newRankBidder)
		s.Rank2Auctions += b2i(newRankAuction)
	default:
		s.Rank3Bids++
		s.Rank3Bidders += b2i(newRankBidder)
		s.Rank3Auctions += b2i(newRankAuction)
	}
	if err := f.days.Put(day, s); err != nil {
		return err
	}
	return ctx.Emit(s)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// BidderWindow is q12's row.
type BidderWindow struct {
	Bidder    int64 `json:"bidder"`
	BidCount  int64 `json:"bid_count"`
	StartTime int64 `json:"starttime"`
	EndTime   int64 `json:"endtime"`
}

// ProcWindow is the window length of q12.
const ProcWindow = 10 * time.Second

// proctimeWindow counts each bidder's bids per tumbling window of
// processing time. A window is emitted by a processing-time timer at its
// last millisecond, or when the input ends (a bounded job's open windows
// are flushed by an event-time timer at the final watermark).
type proctimeWindow struct {
	typed.Base[BidderWindow]
	win *api.ValueState[BidderWindow]
}

func (f *proctimeWindow) Open(ctx api.Context) (err error) {
	f.win, err = typed.Value[BidderWindow](ctx, "window")
	return err
}

func (f *proctimeWindow) ProcessElement(ctx *typed.Context[BidderWindow], b Bid) error {
	w, ok, err := f.win.Lookup()
	if err != nil {
		return err
	}
	if !ok {
		size := ProcWindow.Milliseconds()
		now := ctx.Timers().CurrentProcessingTime()
		start := now - now%size
		w = BidderWindow{Bidder: b.Bidder, StartTime: start, EndTime: start + size}
		if err := ctx.Timers().RegisterProcessingTime(w.EndTime - 1); err != nil {
			return err
		}
		if err := ctx.Timers().RegisterEventTime(api.MaxWatermark); err != nil {
			return err
		}
	}
	w.BidCount++
	return f.win.Update(w)
}

func (f *proctimeWindow) OnTimer(ctx *typed.Context[BidderWindow], t typed.Timer) error {
	w, ok, err := f.win.Lookup()
	if err != nil || !ok {
		return err
	}
	if err := f.win.Clear(); err != nil {
		return err
	}
	// Drop the window's other timer.
	if t.Domain == api.ProcessingTime {
		err = ctx.Timers().DeleteEventTime(api.MaxWatermark)
	} else {
		err = ctx.Timers().DeleteProcessingTime(w.EndTime - 1)
	}
	if err != nil {
		return err
	}
	return ctx.Emit(w)
}

// WindowCount is a row of the built-in window operator without field.
type WindowCount struct {
	Key   string `json:"key"`
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Count int64  `json:"count"`
}

// HotItem is q5's row.
type HotItem struct {
	Auction int64 `json:"auction"`
	Num     int64 `json:"num"`
}

// hotCounts is a window's largest count so far and the auctions with it.
type hotCounts struct {
	Max      int64   `json:"max"`
	Auctions []int64 `json:"auctions"`
}

// hotItems keeps, per window (the key: its start), the auctions with the
// largest count; the window's rows all have its timestamp (end - 1), and
// once the watermark passes it every upstream subtask has sent its rows.
type hotItems struct {
	typed.Base[HotItem]
	top *api.ValueState[hotCounts]
}

func (f *hotItems) Open(ctx api.Context) (err error) {
	f.top, err = typed.Value[hotCounts](ctx, "top")
	return err
}

func (f *hotItems) ProcessElement(ctx *typed.Context[HotItem], c WindowCount) error {
	auction, err := strconv.ParseInt(c.Key, 10, 64)
	if err != nil {
		return err
	}
	top, ok, err := f.top.Lookup()
	if err != nil {
		return err
	}
	switch {
	case !ok:
		if err := ctx.Timers().RegisterEventTime(ctx.Timestamp()); err != nil {
			return err
		}
		top = hotCounts{Max: c.Count, Auctions: []int64{auction}}
	case c.Count > top.Max:
		top = hotCounts{Max: c.Count, Auctions: append(top.Auctions[:0], auction)}
	case c.Count == top.Max:
		top.Auctions = append(top.Auctions, auction)
	default:
		return nil
	}
	return f.top.Update(top)
}

func (f *hotItems) OnTimer(ctx *typed.Context[HotItem], _ typed.Timer) error {
	top, ok, err := f.top.Lookup()
	if err != nil || !ok {
		return err
	}
	if err := f.top.Clear(); err != nil {
		return err
	}
	for _, a := range top.Auctions {
		if err := ctx.Emit(HotItem{Auction: a, Num: top.Max}); err != nil {
			return err
		}
	}
	return nil
}

// Register adds the Nexmark functions' types to reg.
func Register(reg *api.Registry) error {
	if err := typed.Register(reg, typed.Definition[BidAuction, WinningBid]{
		Name: "nexmark-winning-bid",
		Doc: "Nexmark q4/q9: per auction (key), the highest bid (then the earliest) of the joined rows {left: bid, right: auction} " +
			"with the bid's dateTime in the auction's run; emits the auction with that bid when the watermark passes its expiry.",
		Capabilities: typed.Capabilities{EventTimers: true},
		New: func(api.Config) (typed.KeyedProcessFunction[BidAuction, WinningBid], error) {
			return &winningBid{}, nil
		},
	}); err != nil {
		return err
	}
	if err := typed.Register(reg, typed.Definition[Bid, AuctionDay]{
		Name: "nexmark-auction-day-stats",
		Doc:  "Nexmark q17: per auction (key) and day, bid counts by price rank, min, max, average and sum of the price; emits the row on every bid.",
		New: func(api.Config) (typed.KeyedProcessFunction[Bid, AuctionDay], error) {
			return &auctionDayStats{}, nil
		},
	}); err != nil {
		return err
	}
	if err := typed.Register(reg, typed.Definition[Bid, ChannelDay]{
		Name: "nexmark-channel-day-stats",
		Doc:  "Nexmark q16: per channel (key) and day, bid counts and distinct bidders and auctions, in total and by price rank; emits the row on every bid.",
		New: func(api.Config) (typed.KeyedProcessFunction[Bid, ChannelDay], error) {
			return &channelDayStats{}, nil
		},
	}); err != nil {
		return err
	}
	if err := typed.Register(reg, typed.Definition[WindowCount, HotItem]{
		Name: "nexmark-hot-items",
		Doc: "Nexmark q5: per window (key: the window's start) of the window operator's counts {key, start, end, count}, " +
			"the auctions (key) with the largest count; emits them when the watermark passes the window.",
		Capabilities: typed.Capabilities{EventTimers: true},
		New: func(api.Config) (typed.KeyedProcessFunction[WindowCount, HotItem], error) {
			return &hotItems{}, nil
		},
	}); err != nil {
		return err
	}
	return typed.Register(reg, typed.Definition[Bid, BidderWindow]{
		Name:         "nexmark-proctime-window",
		Doc:          "Nexmark q12: bids per bidder (key) per 10 s tumbling window of processing time; open windows are emitted when the input ends.",
		Capabilities: typed.Capabilities{ProcessingTimers: true, EventTimers: true},
		New: func(api.Config) (typed.KeyedProcessFunction[Bid, BidderWindow], error) {
			return &proctimeWindow{}, nil
		},
	})
}

// Registry returns the stock registry (api.Default: the built-ins) with
// the Nexmark functions.
func Registry() (*api.Registry, error) {
	reg := api.Default.Clone()
	return reg, Register(reg)
}
