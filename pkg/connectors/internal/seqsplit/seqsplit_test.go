package seqsplit

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// numbers lists the record numbers below count that splits generate.
func numbers(t *testing.T, splits [][]byte, count int64) []int64 {
	t.Helper()
	sps, err := Decode("test", splits)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, sp := range sps {
		for n := sp.Next; n < count; n += sp.Stride {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Dividing the splits of any parallelism for any other keeps exactly the
// same record numbers, each once.
func TestDivideKeepsEveryNumberOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		p, n, count := int64(1+r.IntN(5)), 1+r.IntN(12), int64(1+r.IntN(300))
		var all [][]byte
		for s := int64(0); s < p; s++ {
			sp := Initial(s, p)
			sp[0].Next += p * int64(r.IntN(3)) // some progress
			enc, err := Encode("test", sp, count)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, enc...)
		}
		want := numbers(t, all, count)
		got, err := Divide("test", all, n, count)
		if err != nil {
			t.Fatal(err)
		}
		if n > len(all) && len(all) > 0 && len(got) <= len(all) && len(want) > len(all) {
			t.Fatalf("p=%d n=%d count=%d: still %d splits after dividing for %d subtasks", p, n, count, len(got), n)
		}
		if g := numbers(t, got, count); !slices.Equal(g, want) {
			t.Fatalf("p=%d n=%d count=%d: numbers changed: %v, want %v", p, n, count, g, want)
		}
	}
}

func TestDecodeRefusesBadSplits(t *testing.T) {
	for _, b := range []string{`{`, `{"v":2,"stride":1,"next":0}`, `{"v":1,"stride":0,"next":0}`, `{"v":1,"stride":1,"next":-1}`} {
		if _, err := Decode("gen", [][]byte{[]byte(b)}); err == nil {
			t.Errorf("Decode(%s) = nil error", b)
		}
	}
	if _, err := AtPosition("gen", 4, 1, 2); err == nil {
		t.Error("AtPosition(4) for subtask 1 of 2 = nil error; it generates only odd numbers")
	}
}
