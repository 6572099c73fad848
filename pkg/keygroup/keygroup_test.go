package keygroup

import "testing"

func TestMurmur3KnownVectors(t *testing.T) {
	// Reference values of MurmurHash3_x86_32 with seed 0.
	cases := []struct {
		in   string
		want uint32
	}{
		{"", 0},
		{"a", 0x3c2569b2},
		{"abc", 0xb3dd93fa},
		{"Hello, world!", 0xc0363e43},
		{"The quick brown fox jumps over the lazy dog", 0x2e4ff723},
	}
	for _, c := range cases {
		if got := Murmur3([]byte(c.in)); got != c.want {
			t.Errorf("Murmur3(%q) = %#x, want %#x", c.in, got, c.want)
		}
	}
}

func TestRangesPartitionAllKeyGroups(t *testing.T) {
	for _, maxP := range []int{1, 7, 128, 1000} {
		for p := 1; p <= maxP && p <= 40; p++ {
			next := 0
			for i := 0; i < p; i++ {
				r := RangeFor(maxP, p, i)
				if r.Start != next {
					t.Fatalf("maxP=%d p=%d subtask %d starts at %d, want %d", maxP, p, i, r.Start, next)
				}
				for kg := r.Start; kg <= r.End; kg++ {
					if got := OperatorIndex(kg, maxP, p); got != i {
						t.Fatalf("maxP=%d p=%d: key group %d in range of %d but OperatorIndex=%d", maxP, p, kg, i, got)
					}
				}
				next = r.End + 1
			}
			if next != maxP {
				t.Fatalf("maxP=%d p=%d: ranges end at %d, want %d", maxP, p, next, maxP)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Validate(4, 128); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]int{{0, 128}, {129, 128}, {1, 0}, {1, 1 << 16}} {
		if Validate(c[0], c[1]) == nil {
			t.Errorf("Validate(%d, %d) = nil, want error", c[0], c[1])
		}
	}
}

func BenchmarkAssign(b *testing.B) {
	key := []byte("k12345")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = Assign(key, 128)
	}
}
