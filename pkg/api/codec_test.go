package api_test

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/flowrt/flow/pkg/api"
)

func roundTrip[T comparable](t *testing.T, c api.Codec[T], vs ...T) [][]byte {
	t.Helper()
	var encs [][]byte
	for _, v := range vs {
		b, err := c.Encode([]byte("prefix"), v)
		if err != nil {
			t.Fatalf("%s encode %v: %v", c.ID(), v, err)
		}
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("%s Encode did not append", c.ID())
		}
		b = b[len("prefix"):]
		got, err := c.Decode(b)
		if err != nil || got != v {
			t.Fatalf("%s round trip of %v = %v, %v", c.ID(), v, got, err)
		}
		encs = append(encs, b)
	}
	return encs
}

func sorted(encs [][]byte) bool {
	return slices.IsSortedFunc(encs, bytes.Compare)
}

func TestCodecsRoundTripAndOrder(t *testing.T) {
	if e := roundTrip(t, api.Int64Codec(), math.MinInt64, -5, -1, 0, 1, 7, math.MaxInt64); !sorted(e) {
		t.Fatal("int64 encoding not order-preserving")
	}
	if e := roundTrip(t, api.Float64Codec(), math.Inf(-1), -2.5, -0.1, 0, 0.1, 3, math.Inf(1)); !sorted(e) {
		t.Fatal("float64 encoding not order-preserving")
	}
	if e := roundTrip(t, api.Uint64Codec(), 0, 1, 1<<40, math.MaxUint64); !sorted(e) {
		t.Fatal("uint64 encoding not order-preserving")
	}
	if e := roundTrip(t, api.StringCodec(), "", "a", "ab", "b"); !sorted(e) {
		t.Fatal("string encoding not order-preserving")
	}
	roundTrip(t, api.IntCodec(), -3, 0, 9)
	roundTrip(t, api.BoolCodec(), false, true)
	now := time.Unix(1700000000, 123).UTC()
	roundTrip(t, api.TimeCodec(), now)
	b, _ := api.BytesCodec().Encode(nil, []byte{1, 2})
	got, _ := api.BytesCodec().Decode(b)
	b[0] = 9
	if got[0] != 1 {
		t.Fatal("BytesCodec.Decode must copy")
	}
}

func TestCodecErrors(t *testing.T) {
	for name, err := range map[string]error{
		"int64":   func() error { _, err := api.Int64Codec().Decode([]byte{1}); return err }(),
		"uint64":  func() error { _, err := api.Uint64Codec().Decode(nil); return err }(),
		"float64": func() error { _, err := api.Float64Codec().Decode([]byte{1, 2}); return err }(),
		"bool":    func() error { _, err := api.BoolCodec().Decode([]byte{2}); return err }(),
		"time":    func() error { _, err := api.TimeCodec().Decode([]byte{}); return err }(),
		"json":    func() error { _, err := api.JSON[struct{ A int }]().Decode([]byte{0, '{'}); return err }(),
		"json-empty": func() error {
			_, err := api.JSON[struct{ A int }]().Decode(nil)
			return err
		}(),
	} {
		if !errors.Is(err, api.ErrCodec) {
			t.Errorf("%s: error %v does not wrap ErrCodec", name, err)
		}
	}
	if _, err := api.JSON[chan int]().Encode(nil, make(chan int)); !errors.Is(err, api.ErrCodec) {
		t.Errorf("unencodable JSON value: %v", err)
	}
}

func TestJSONCodecVersions(t *testing.T) {
	type v1 struct{ A int }
	type v2 struct {
		A int
		B string
	}
	old := &api.JSONCodec[v1]{Name: "thing"}
	cur := &api.JSONCodec[v2]{Name: "thing", Version: 2}
	if old.ID() != cur.ID() {
		t.Fatalf("IDs differ across versions: %q %q", old.ID(), cur.ID())
	}
	b, _ := old.Encode(nil, v1{A: 4})
	if got, err := cur.Decode(b); err != nil || got != (v2{A: 4}) {
		t.Fatalf("old bytes with a newer codec: %+v %v", got, err)
	}
	nb, _ := cur.Encode(nil, v2{A: 1, B: "x"})
	if nb[0] != 2 {
		t.Fatalf("version byte %d", nb[0])
	}
	if _, err := old.Decode(nb); !errors.Is(err, api.ErrCodec) {
		t.Fatalf("newer bytes with an older codec: %v", err)
	}
	if id := api.JSON[v1]().ID(); id == "json:" {
		t.Fatal("empty default ID")
	}
}
