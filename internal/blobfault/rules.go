package blobfault

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ErrInjected is wrapped by every error a fault injects.
var ErrInjected = errors.New("injected fault")

// Op is a kind of bucket operation.
type Op int

const (
	// OpCreate: a write begins (Bucket.NewWriter, WriteAll, Upload). Key: the object key.
	OpCreate Op = iota + 1
	// OpWrite: Writer.Write. Logged only when a fault fires.
	OpWrite
	// OpClose: Writer.Close, when the object lands. Logged with the bytes
	// that landed.
	OpClose
	// OpRead: a read begins (NewReader, NewRangeReader, ReadAll, Download).
	OpRead
	// OpList: one page of a listing. Key: the listing prefix for Fail; each
	// listed object's key for Vanish.
	OpList
	// OpAttributes: Attributes and Exists.
	OpAttributes
	// OpDelete: Delete.
	OpDelete
	// OpCopy: Copy. Key: the destination key.
	OpCopy
)

var opNames = map[Op]string{OpCreate: "create", OpWrite: "write", OpClose: "close", OpRead: "read",
	OpList: "list", OpAttributes: "attributes", OpDelete: "delete", OpCopy: "copy"}

func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

type faultKind int

const (
	kindFail faultKind = iota + 1
	kindTruncate
	kindFlip
	kindVanish
)

// Fault is what happens to an operation a rule fires on. Build one with
// Fail, Truncate, Flip or Vanish.
type Fault struct {
	kind faultKind
	n    int64
	err  error
}

// Fail makes the operation return an error wrapping ErrInjected (and err,
// when not nil). A failed create, write or close leaves no object.
func Fail(err error) Fault { return Fault{kind: kindFail, err: err} }

// Truncate (OpClose only) makes only the first keep bytes of the object
// land (keep < 0: all but the last -keep bytes) while Close reports
// success: a broken server, which checksums and recorded sizes must catch
// later.
func Truncate(keep int64) Fault { return Fault{kind: kindTruncate, n: keep} }

// Flip (OpRead only) makes the reader return the byte at offset at of the
// object (at < 0: counted from the end, -1 is the last byte) with every
// bit inverted. The stored object is unchanged.
func Flip(at int64) Fault { return Fault{kind: kindFlip, n: at} }

// Vanish (OpList only) deletes each listed object whose key matches the
// rule right after the listing returns it (for a directory entry of a
// delimited listing: the matching objects under it), so the read that
// follows finds nothing.
func Vanish() Fault { return Fault{kind: kindVanish} }

func (f Fault) String() string {
	switch f.kind {
	case kindFail:
		if f.err != nil {
			return "fail: " + f.err.Error()
		}
		return "fail"
	case kindTruncate:
		return fmt.Sprintf("truncate to %d", f.n)
	case kindFlip:
		return fmt.Sprintf("flip byte %d", f.n)
	case kindVanish:
		return "vanish"
	}
	return "no fault"
}

func (f Fault) error(op Op, key string) error {
	if f.err != nil {
		return fmt.Errorf("blobfault: %s %s: %w: %w", op, key, ErrInjected, f.err)
	}
	return fmt.Errorf("blobfault: %s %s: %w", op, key, ErrInjected)
}

// Rule injects Fault into the operations Op on keys matching Key.
type Rule struct {
	Op Op
	// Key is a pattern over '/'-separated keys: each segment as in
	// path.Match, and a "**" segment matches any number of segments
	// ("**/chk-2/*", "job/**"). Empty matches every key.
	Key   string
	Fault Fault
	// After skips the first After matching operations.
	After int
	// Times is how many times the rule fires; 0 means every time.
	Times int
}

func (r Rule) String() string {
	s := fmt.Sprintf("%s %q: %s", r.Op, r.Key, r.Fault)
	if r.After > 0 {
		s += fmt.Sprintf(" after %d", r.After)
	}
	if r.Times > 0 {
		s += fmt.Sprintf(" %d times", r.Times)
	}
	return s
}

func (r Rule) validate() error {
	if _, ok := opNames[r.Op]; !ok {
		return fmt.Errorf("blobfault: rule %v: unknown op", r)
	}
	switch r.Fault.kind {
	case kindFail:
	case kindTruncate:
		if r.Op != OpClose {
			return fmt.Errorf("blobfault: rule %v: Truncate applies to OpClose only", r)
		}
	case kindFlip:
		if r.Op != OpRead {
			return fmt.Errorf("blobfault: rule %v: Flip applies to OpRead only", r)
		}
	case kindVanish:
		if r.Op != OpList {
			return fmt.Errorf("blobfault: rule %v: Vanish applies to OpList only", r)
		}
	default:
		return fmt.Errorf("blobfault: rule %v: no fault (use Fail, Truncate, Flip or Vanish)", r)
	}
	if r.After < 0 || r.Times < 0 {
		return fmt.Errorf("blobfault: rule %v: After and Times must not be negative", r)
	}
	for _, seg := range strings.Split(r.Key, "/") {
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("blobfault: rule %v: bad key pattern: %w", r, err)
		}
	}
	return nil
}

// Match reports whether key matches pattern (see Rule.Key).
func Match(pattern, key string) bool {
	if pattern == "" {
		return true
	}
	return matchSegs(strings.Split(pattern, "/"), strings.Split(strings.TrimSuffix(key, "/"), "/"))
}

func matchSegs(pat, key []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(key); i++ {
				if matchSegs(pat[1:], key[i:]) {
					return true
				}
			}
			return false
		}
		if len(key) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], key[0]); err != nil || !ok {
			return false
		}
		pat, key = pat[1:], key[1:]
	}
	return len(key) == 0
}

// Injected is a rule added to a Store.
type Injected struct {
	st    *Store
	rule  Rule
	seen  int // matching operations consulted
	fired int
}

// Rule is the rule as added.
func (in *Injected) Rule() Rule { return in.rule }

// Fired is how many times the rule fired.
func (in *Injected) Fired() int {
	in.st.mu.Lock()
	defer in.st.mu.Unlock()
	return in.fired
}

// Remove removes the rule from its store.
func (in *Injected) Remove() {
	in.st.mu.Lock()
	defer in.st.mu.Unlock()
	for i, r := range in.st.rules {
		if r == in {
			in.st.rules = append(in.st.rules[:i:i], in.st.rules[i+1:]...)
			return
		}
	}
}
