package jobspec

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// entry is one key/value pair of a YAML mapping.
type entry struct {
	key, val *yaml.Node
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// kindName describes a node for error messages.
func kindName(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "bool " + n.Value
		case "!!null":
			return "null"
		}
		return strconv.Quote(n.Value)
	}
	return "a document"
}

// mapping checks that n is a mapping and returns its entries by key. Keys not
// in known are reported (known == nil accepts any key); duplicate keys are
// reported; entries with null values are left out (absent).
func (p *parser) mapping(n *yaml.Node, what string, known []string) (map[string]entry, bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errAt(n, "%s: want a mapping, got %s", what, kindName(n))
		return nil, false
	}
	out := make(map[string]entry, len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errAt(k, "%s: keys must be plain names, got %s", what, kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.errAt(k, "%s: duplicate key %q (first set on line %d): remove one", what, k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		if known != nil && !contains(known, k.Value) {
			p.errAt(k, "%s: unknown key %q%s (known keys: %s)", what, k.Value, didYouMean(k.Value, known), strings.Join(sorted(known), ", "))
			continue
		}
		if isNull(v) {
			continue
		}
		out[k.Value] = entry{key: k, val: resolve(v)}
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sorted(list []string) []string {
	out := append([]string(nil), list...)
	sort.Strings(out)
	return out
}

// didYouMean returns `: did you mean "x"?` for the closest candidate within
// a small edit distance, or "".
func didYouMean(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range sorted(candidates) {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || best == s || bestD > len(s)/2 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// The scalar readers below report a located error and return ok=false when
// the value has the wrong shape.

func (p *parser) str(e entry, what string) (string, bool) {
	n := e.val
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode {
			hint = ": quote the value"
		}
		p.errAt(n, "%s: want a string, got %s%s", what, kindName(n), hint)
		return "", false
	}
	return n.Value, true
}

func (p *parser) integer(e entry, what string) (int64, bool) {
	n := e.val
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		p.errAt(n, "%s: want an integer, got %s", what, kindName(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		p.errAt(n, "%s: integer %s is out of range", what, n.Value)
		return 0, false
	}
	return v, true
}

// intIn reads an integer in [lo, hi].
func (p *parser) intIn(e entry, what string, lo, hi int64) (int64, bool) {
	v, ok := p.integer(e, what)
	if !ok {
		return 0, false
	}
	if v < lo || v > hi {
		if hi == math.MaxInt64 || hi == math.MaxInt32 {
			p.errAt(e.val, "%s: %d is out of range: use at least %d", what, v, lo)
		} else {
			p.errAt(e.val, "%s: %d is out of range: use %d..%d", what, v, lo, hi)
		}
		return 0, false
	}
	return v, true
}

func (p *parser) float(e entry, what string) (float64, bool) {
	n := e.val
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") {
		p.errAt(n, "%s: want a number, got %s", what, kindName(n))
		return 0, false
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		p.errAt(n, "%s: want a finite number, got %s", what, n.Value)
		return 0, false
	}
	return v, true
}

func (p *parser) boolean(e entry, what string) (bool, bool) {
	n := e.val
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.errAt(n, "%s: want true or false, got %s", what, kindName(n))
		return false, false
	}
	var v bool
	if err := n.Decode(&v); err != nil {
		p.errAt(n, "%s: want true or false, got %s", what, kindName(n))
		return false, false
	}
	return v, true
}

// duration reads a Go duration string ("500ms") or an integer of
// milliseconds; negative durations are rejected.
func (p *parser) duration(e entry, what string) (time.Duration, bool) {
	n := e.val
	if n.Kind == yaml.ScalarNode {
		switch n.Tag {
		case "!!str":
			d, err := time.ParseDuration(strings.TrimSpace(n.Value))
			if err != nil {
				p.errAt(n, "%s: %q is not a duration: write one such as 500ms, 10s or 1m30s", what, n.Value)
				return 0, false
			}
			if d < 0 {
				p.errAt(n, "%s: %s is negative: use a duration of 0 or more", what, n.Value)
				return 0, false
			}
			return d, true
		case "!!int":
			var ms int64
			if err := n.Decode(&ms); err != nil || ms < 0 || ms > math.MaxInt64/int64(time.Millisecond) {
				p.errAt(n, "%s: %s ms is out of range: use a duration such as 500ms", what, n.Value)
				return 0, false
			}
			return time.Duration(ms) * time.Millisecond, true
		}
	}
	p.errAt(n, "%s: want a duration such as 500ms or 10s, got %s", what, kindName(n))
	return 0, false
}

var sizeRE = regexp.MustCompile(`^\s*([0-9]+)\s*([A-Za-z]*)\s*$`)

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1000, "mb": 1000 * 1000, "gb": 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
	"k": 1 << 10, "m": 1 << 20, "g": 1 << 30,
}

// ParseSize reads a byte size: an integer of bytes or a number with a unit
// such as 64MiB, 512KiB, 1GB (B, KB, MB, GB, KiB, MiB, GiB, K, M, G).
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m != nil {
		mult, ok := sizeUnits[strings.ToLower(m[2])]
		v, err := strconv.ParseInt(m[1], 10, 64)
		if ok && err == nil && v <= math.MaxInt64/mult {
			return v * mult, nil
		}
	}
	return 0, fmt.Errorf("%q is not a size: write bytes or a size such as 64MiB, 512KiB or 1GB", s)
}

// size reads a byte size: an integer of bytes or a string such as "64MiB".
func (p *parser) size(e entry, what string) (int64, bool) {
	n := e.val
	if n.Kind == yaml.ScalarNode {
		switch n.Tag {
		case "!!int":
			return p.intIn(e, what, 0, math.MaxInt64)
		case "!!str":
			if v, err := ParseSize(n.Value); err == nil {
				return v, true
			}
			p.errAt(n, "%s: %q is not a size: write bytes or a size such as 64MiB, 512KiB or 1GB", what, n.Value)
			return 0, false
		}
	}
	p.errAt(n, "%s: want a size such as 64MiB, got %s", what, kindName(n))
	return 0, false
}

func (p *parser) enum(e entry, what string, allowed ...string) (string, bool) {
	s, ok := p.str(e, what)
	if !ok {
		return "", false
	}
	if !contains(allowed, s) {
		p.errAt(e.val, "%s: %q is not allowed%s: use one of %s", what, s, didYouMean(s, allowed), strings.Join(allowed, ", "))
		return "", false
	}
	return s, true
}
