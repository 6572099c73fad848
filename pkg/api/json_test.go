package api

import (
	"encoding/json"
	"testing"
)

func TestAppendJSONStringRoundTrips(t *testing.T) {
	for _, s := range []string{"", "k1", `quo"te\back`, "tab\tnew\nline\x01", "é€😀", "\u2028\u2029", "bad\xffutf8"} {
		out := AppendJSONString([]byte("x:"), []byte(s))
		var got string
		if err := json.Unmarshal(out[2:], &got); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, out, err)
		}
		want := s
		if s == "bad\xffutf8" {
			want = "bad\uFFFDutf8"
		}
		if got != want {
			t.Fatalf("%q round-trips to %q", s, got)
		}
	}
}

func BenchmarkAppendJSONString(b *testing.B) {
	buf := make([]byte, 0, 64)
	key := []byte("k12345")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendJSONString(buf[:0], key)
	}
}
