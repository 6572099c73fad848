package nexmark

import "strconv"

// AppendJSON appends the event's JSON (the shape in docs/nexmark.md: flat,
// event_type first). The generator's strings are ASCII letters, digits,
// spaces and URL characters, so they are written without escaping.
func AppendJSON(dst []byte, e *Event) []byte {
	switch e.Kind {
	case KindPerson:
		p := &e.Person
		dst = append(dst, `{"event_type":0,"id":`...)
		dst = strconv.AppendInt(dst, p.ID, 10)
		dst = appendStr(dst, `,"name":"`, p.Name)
		dst = appendStr(dst, `","emailAddress":"`, p.Email)
		dst = appendStr(dst, `","creditCard":"`, p.CreditCard)
		dst = appendStr(dst, `","city":"`, p.City)
		dst = appendStr(dst, `","state":"`, p.State)
		dst = appendInt(dst, `","dateTime":`, p.DateTime)
		dst = appendStr(dst, `,"extra":"`, p.Extra)
	case KindAuction:
		a := &e.Auction
		dst = appendInt(dst, `{"event_type":1,"id":`, a.ID)
		dst = appendStr(dst, `,"itemName":"`, a.ItemName)
		dst = appendStr(dst, `","description":"`, a.Description)
		dst = appendInt(dst, `","initialBid":`, a.InitialBid)
		dst = appendInt(dst, `,"reserve":`, a.Reserve)
		dst = appendInt(dst, `,"dateTime":`, a.DateTime)
		dst = appendInt(dst, `,"expires":`, a.Expires)
		dst = appendInt(dst, `,"seller":`, a.Seller)
		dst = appendInt(dst, `,"category":`, a.Category)
		dst = appendStr(dst, `,"extra":"`, a.Extra)
	default:
		b := &e.Bid
		dst = appendInt(dst, `{"event_type":2,"auction":`, b.Auction)
		dst = appendInt(dst, `,"bidder":`, b.Bidder)
		dst = appendInt(dst, `,"price":`, b.Price)
		dst = appendStr(dst, `,"channel":"`, b.Channel)
		dst = appendStr(dst, `","url":"`, b.URL)
		dst = appendInt(dst, `","dateTime":`, b.DateTime)
		dst = appendStr(dst, `,"extra":"`, b.Extra)
	}
	return append(dst, `"}`...)
}

func appendStr(dst []byte, prefix, s string) []byte {
	return append(append(dst, prefix...), s...)
}

func appendInt(dst []byte, prefix string, n int64) []byte {
	return strconv.AppendInt(append(dst, prefix...), n, 10)
}
