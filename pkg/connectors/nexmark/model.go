package nexmark

import (
	"math"
	"strconv"
	"unsafe"
)

// The event model, after the Nexmark benchmark's generator (written anew
// here from its description; see docs/nexmark.md):
//
//   - Event number n (0, 1, 2, ... over the whole job) has the id
//     adjusted(n): within each group of outOfOrder consecutive numbers the
//     ids are permuted (id = group base + n*953 mod outOfOrder), which is
//     the reference's out-of-orderness; outOfOrder = 1 keeps ids in order.
//   - The id decides the kind: id mod 50 is 0 for a Person, 1..3 for an
//     Auction and 4..49 for a Bid (proportions 1 : 3 : 46).
//   - The event time is BaseTime + id * 1e6/rate µs, in ms: rate events per
//     second of event time.
//   - Every random choice of an event comes from a generator seeded by
//     (seed, id), so an event depends only on the seed and its number.

// Proportions of the three kinds.
const (
	personProportion  = 1
	auctionProportion = 3
	bidProportion     = 46
	totalProportion   = personProportion + auctionProportion + bidProportion
)

// Model constants (the reference's defaults).
const (
	FirstPersonID       = 1000
	FirstAuctionID      = 1000
	FirstCategoryID     = 10
	numCategories       = 5
	hotAuctionRatio     = 2
	hotSellersRatio     = 4
	hotBiddersRatio     = 4
	hotRatio            = 100 // hot ids are multiples of it
	numInFlightAuctions = 100
	numActivePeople     = 1000
	personIDLead        = 10
	auctionIDLead       = 10
	avgPersonBytes      = 200
	avgAuctionBytes     = 500
	avgBidBytes         = 100
)

// Kinds, the event_type field of every event.
const (
	KindPerson  = 0
	KindAuction = 1
	KindBid     = 2
)

// Params are what an event depends on besides its number.
type Params struct {
	Seed       int64
	Rate       int64 // events per second of event time (> 0)
	BaseTime   int64 // ms of event number 0
	OutOfOrder int64 // group size of the out-of-orderness (>= 1)
}

// Person is a new person event.
type Person struct {
	ID                                   int64
	Name, Email, CreditCard, City, State string
	DateTime                             int64
	Extra                                string
}

// Auction is a new auction event.
type Auction struct {
	ID                    int64
	ItemName, Description string
	InitialBid, Reserve   int64
	DateTime, Expires     int64
	Seller, Category      int64
	Extra                 string
}

// Bid is a bid event.
type Bid struct {
	Auction, Bidder, Price int64
	Channel, URL           string
	DateTime               int64
	Extra                  string
}

// Event is one generated event: Kind says which of the three is set.
type Event struct {
	Kind    int
	Person  Person
	Auction Auction
	Bid     Bid
}

// rng is splitmix64: small, fast and good enough for synthetic data.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	x := r.s
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (r *rng) intn(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return int64(r.next() % uint64(n))
}

func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// adjusted is the id of event number n.
func (p *Params) adjusted(n int64) int64 {
	g := max(p.OutOfOrder, 1)
	return n/g*g + (n*953)%g
}

// timestamp is the event time of id.
func (p *Params) timestamp(id int64) int64 {
	return p.BaseTime + int64(float64(id)*(1e6/float64(p.Rate)))/1000
}

func lastPersonID(id int64) int64 {
	epoch, off := id/totalProportion, id%totalProportion
	if off >= personProportion {
		off = personProportion - 1
	}
	return epoch*personProportion + off
}

func lastAuctionID(id int64) int64 {
	epoch, off := id/totalProportion, id%totalProportion
	switch {
	case off < personProportion:
		epoch--
		off = auctionProportion - 1
	case off >= personProportion+auctionProportion:
		off = auctionProportion - 1
	default:
		off -= personProportion
	}
	return epoch*auctionProportion + off
}

func nextPersonID(id int64, r *rng) int64 {
	people := lastPersonID(id) + 1
	active := min(people, numActivePeople)
	return people - active + r.intn(active+personIDLead)
}

func nextAuctionID(id int64, r *rng) int64 {
	hi := lastAuctionID(id)
	lo := max(hi-numInFlightAuctions, 0)
	return lo + r.intn(hi-lo+1+auctionIDLead)
}

func nextPrice(r *rng) int64 { return int64(math.Round(math.Pow(10, r.float()*6) * 100)) }

const letters = "abcdefghijklmnopqrstuvwxyz"

// scratch builds an event's strings in one reused buffer: the strings of an
// event stay valid until the next event is generated with the same scratch.
type scratch struct{ b []byte }

func (s *scratch) str(start int) string {
	b := s.b[start:]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func (s *scratch) letters(r *rng, n int64) {
	for range n {
		s.b = append(s.b, letters[r.intn(26)])
	}
}

func (s *scratch) nextString(r *rng, maxLen int64) string {
	st := len(s.b)
	s.letters(r, 1+r.intn(maxLen))
	return s.str(st)
}

// nextExtra pads an event to about its kind's average size (±20%).
func (s *scratch) nextExtra(r *rng, size, avg int64) string {
	if size >= avg {
		return ""
	}
	d := avg - size
	st := len(s.b)
	s.letters(r, d-d/5+r.intn(d/5*2+1))
	return s.str(st)
}

func (s *scratch) concat(parts ...string) string {
	st := len(s.b)
	for _, p := range parts {
		s.b = append(s.b, p...)
	}
	return s.str(st)
}

func (s *scratch) number(prefix string, n int64, suffix string) string {
	st := len(s.b)
	s.b = append(s.b, prefix...)
	s.b = strconv.AppendInt(s.b, n, 10)
	s.b = append(s.b, suffix...)
	return s.str(st)
}

var (
	usStates   = []string{"AZ", "CA", "ID", "OR", "WA", "WY"}
	usCities   = []string{"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"}
	firstNames = []string{"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"}
	lastNames  = []string{"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"}
	hotChans   = []string{"Google", "Facebook", "Baidu", "Apple"}
	hotURLs    = []string{"https://www.nexmark.com/hot/google/item.htm?query=1", "https://www.nexmark.com/hot/facebook/item.htm?query=1",
		"https://www.nexmark.com/hot/baidu/item.htm?query=1", "https://www.nexmark.com/hot/apple/item.htm?query=1"}
)

// Generate returns event number n.
func Generate(p *Params, n int64) Event {
	var s scratch
	return s.generate(p, n)
}

// generate is Generate with the event's strings built in s (valid until
// the next call): it allocates nothing once s has grown.
func (s *scratch) generate(p *Params, n int64) Event {
	s.b = s.b[:0]
	if cap(s.b) < 1024 {
		s.b = make([]byte, 0, 1024) // no event needs more: strings stay in one array
	}
	id := p.adjusted(n)
	ts := p.timestamp(id)
	r := rng{s: uint64(p.Seed)*0x2545f4914f6cdd1d ^ uint64(id)}
	r.next()
	switch off := id % totalProportion; {
	case off < personProportion:
		pe := Person{ID: lastPersonID(id) + FirstPersonID, DateTime: ts}
		pe.Name = s.concat(firstNames[r.intn(int64(len(firstNames)))], " ", lastNames[r.intn(int64(len(lastNames)))])
		st := len(s.b)
		s.letters(&r, 1+r.intn(7))
		s.b = append(s.b, '@')
		s.letters(&r, 1+r.intn(5))
		s.b = append(s.b, ".com"...)
		pe.Email = s.str(st)
		st = len(s.b)
		for i := range 4 {
			if i > 0 {
				s.b = append(s.b, ' ')
			}
			s.b = strconv.AppendInt(s.b, 1000+r.intn(9000), 10)
		}
		pe.CreditCard = s.str(st)
		pe.City = usCities[r.intn(int64(len(usCities)))]
		pe.State = usStates[r.intn(int64(len(usStates)))]
		pe.Extra = s.nextExtra(&r, int64(8+len(pe.Name)+len(pe.Email)+len(pe.CreditCard)+len(pe.City)+len(pe.State)), avgPersonBytes)
		return Event{Kind: KindPerson, Person: pe}
	case off < personProportion+auctionProportion:
		a := Auction{ID: lastAuctionID(id) + FirstAuctionID, DateTime: ts}
		if r.intn(hotSellersRatio) > 0 {
			a.Seller = lastPersonID(id) / hotRatio * hotRatio
		} else {
			a.Seller = nextPersonID(id, &r)
		}
		a.Seller += FirstPersonID
		a.Category = FirstCategoryID + r.intn(numCategories)
		a.InitialBid = nextPrice(&r)
		// An auction runs up to twice the event time numInFlightAuctions
		// auctions take to be created.
		horizon := p.timestamp(id+numInFlightAuctions*totalProportion/auctionProportion) - ts
		a.Expires = ts + 1 + r.intn(max(horizon*2, 1))
		a.ItemName = s.nextString(&r, 20)
		a.Description = s.nextString(&r, 100)
		a.Reserve = a.InitialBid + nextPrice(&r)
		a.Extra = s.nextExtra(&r, int64(8+len(a.ItemName)+len(a.Description)+40), avgAuctionBytes)
		return Event{Kind: KindAuction, Auction: a}
	default:
		b := Bid{DateTime: ts}
		if r.intn(hotAuctionRatio) > 0 {
			b.Auction = lastAuctionID(id) / hotRatio * hotRatio
		} else {
			b.Auction = nextAuctionID(id, &r)
		}
		b.Auction += FirstAuctionID
		if r.intn(hotBiddersRatio) > 0 {
			b.Bidder = lastPersonID(id)/hotRatio*hotRatio + 1
		} else {
			b.Bidder = nextPersonID(id, &r)
		}
		b.Bidder += FirstPersonID
		b.Price = nextPrice(&r)
		if r.intn(2) > 0 {
			i := r.intn(int64(len(hotChans)))
			b.Channel, b.URL = hotChans[i], hotURLs[i]
		} else {
			c := r.intn(10000)
			b.Channel = s.number("channel-", c, "")
			b.URL = s.number("https://www.nexmark.com/item.htm?query=1&channel_id=", c, "")
		}
		b.Extra = s.nextExtra(&r, 32, avgBidBytes)
		return Event{Kind: KindBid, Bid: b}
	}
}

// Timestamp returns the event time of event number n.
func Timestamp(p *Params, n int64) int64 { return p.timestamp(p.adjusted(n)) }
