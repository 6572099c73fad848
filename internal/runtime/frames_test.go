package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/flowrt/flow/pkg/api"
)

func TestFramesRoundTrip(t *testing.T) {
	var w frameWriter
	w.reset(make([]byte, 0, 256))
	recs := []api.Record{
		{Key: []byte("k1"), Value: []byte(`{"a":1}`), Timestamp: 5},
		{Key: nil, Value: []byte(`2`), Timestamp: api.NoTimestamp},
	}
	w.appendRecord(&recs[0])
	w.appendRecord(&recs[1])
	w.appendWatermark(4)
	w.appendStatus(true)
	w.appendStatus(false)
	recs = append(recs, api.Record{Key: []byte("x"), Value: []byte(`"s"`), Timestamp: -7})
	w.appendRecord(&recs[2])
	w.appendWatermark(api.MaxWatermark)

	var rd frameReader
	rd.reset(w.buf)
	var got []string
	var r api.Record
	for {
		k, ts, idle, err := rd.next(&r)
		if err != nil {
			t.Fatal(err)
		}
		if k == evNone {
			break
		}
		switch k {
		case evRecord:
			got = append(got, fmt.Sprintf("rec(%s,%s,%d)", r.Key, r.Value, r.Timestamp))
		case evWatermark:
			got = append(got, fmt.Sprintf("wm(%d)", ts))
		case evStatus:
			got = append(got, fmt.Sprintf("idle(%v)", idle))
		}
	}
	want := fmt.Sprintf(`[rec(k1,{"a":1},5) rec(,2,%d) wm(4) idle(true) idle(false) rec(x,"s",-7) wm(%d)]`, api.NoTimestamp, api.MaxWatermark)
	if fmt.Sprint(got) != want {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

func TestFramesCorrupt(t *testing.T) {
	var w frameWriter
	w.reset(nil)
	w.appendRecord(&api.Record{Key: []byte("key"), Value: []byte("value"), Timestamp: 1})
	full := bytes.Clone(w.buf)
	for cut := 1; cut < len(full); cut++ {
		var rd frameReader
		rd.reset(full[:cut])
		var r api.Record
		_, _, _, err := rd.next(&r)
		if !errors.Is(err, ErrCorruptFrame) {
			t.Errorf("truncated at %d: err = %v, want ErrCorruptFrame", cut, err)
		}
	}
	var rd frameReader
	rd.reset([]byte{99})
	if _, _, _, err := rd.next(&api.Record{}); !errors.Is(err, ErrCorruptFrame) {
		t.Fatalf("unknown type: err = %v", err)
	}
}

func BenchmarkEncodeDecode(b *testing.B) {
	var w frameWriter
	buf := make([]byte, 0, 32*1024)
	rec := api.Record{Key: []byte("k42"), Value: []byte(`{"key":"k42","seq":123456,"value":789,"ts":1700000000000}`), Timestamp: 1700000000000}
	var rd frameReader
	var out api.Record
	b.ReportAllocs()
	n := 0
	w.reset(buf)
	for b.Loop() {
		if len(w.buf)+recordSize(&rec) > cap(w.buf) {
			rd.reset(w.buf)
			for {
				k, _, _, err := rd.next(&out)
				if err != nil {
					b.Fatal(err)
				}
				if k == evNone {
					break
				}
				n++
			}
			w.reset(buf)
		}
		w.appendRecord(&rec)
	}
	_ = n
}
