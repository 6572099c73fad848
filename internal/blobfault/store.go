package blobfault

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"
)

// Scheme is the URL scheme of fault-injecting stores: faulty://NAME/prefix.
const Scheme = "faulty"

func init() {
	blob.DefaultURLMux().RegisterBucket(Scheme, urlOpener{})
}

// Store is a named fault-injecting bucket over a base bucket: its rules,
// its op log, and the base objects. Safe for concurrent use.
type Store struct {
	name string
	base *blob.Bucket

	mu     sync.Mutex
	rules  []*Injected
	log    []Entry
	closed bool
}

var registry struct {
	sync.Mutex
	m map[string]*Store
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)

// New registers the store NAME over base (which Close closes); the URL
// faulty://NAME/prefix opens it. NAME is lower-case letters, digits, '.'
// and '-' (a URL host); it must not be registered already.
func New(name string, base *blob.Bucket) (*Store, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("blobfault: store name %q: use lower-case letters, digits, '.' and '-'", name)
	}
	registry.Lock()
	defer registry.Unlock()
	if registry.m == nil {
		registry.m = map[string]*Store{}
	}
	if _, ok := registry.m[name]; ok {
		return nil, fmt.Errorf("blobfault: store %q is already registered", name)
	}
	st := &Store{name: name, base: base}
	registry.m[name] = st
	return st, nil
}

// NewMem registers the store NAME over a fresh in-memory bucket.
func NewMem(name string) (*Store, error) {
	return New(name, memblob.OpenBucket(nil))
}

// NewFile registers the store NAME over the existing local directory dir,
// opened as pkg/checkpoint/storage opens file:// (no attribute sidecars,
// temporary files beside their targets).
func NewFile(name, dir string) (*Store, error) {
	b, err := fileblob.OpenBucket(dir, &fileblob.Options{Metadata: fileblob.MetadataDontWrite, NoTempDir: true})
	if err != nil {
		return nil, fmt.Errorf("blobfault: store %q: %w", name, err)
	}
	st, err := New(name, b)
	if err != nil {
		_ = b.Close()
	}
	return st, err
}

// Lookup returns the registered store NAME, or nil.
func Lookup(name string) *Store {
	registry.Lock()
	defer registry.Unlock()
	return registry.m[name]
}

// Name is the store's registered name.
func (st *Store) Name() string { return st.name }

// URL is faulty://NAME/prefix.
func (st *Store) URL(prefix string) string {
	u := url.URL{Scheme: Scheme, Host: st.name, Path: "/" + strings.Trim(prefix, "/")}
	return strings.TrimSuffix(u.String(), "/")
}

// Base is the bucket under the faults: read or change objects through it
// without rules firing and without log entries.
func (st *Store) Base() *blob.Bucket { return st.base }

// Bucket opens a *blob.Bucket whose operations go through the store's
// rules and log. Closing it does not close the base.
func (st *Store) Bucket() *blob.Bucket { return blob.NewBucket(&bucket{st: st}) }

// Close unregisters the store and closes its base.
func (st *Store) Close() error {
	registry.Lock()
	if registry.m[st.name] == st {
		delete(registry.m, st.name)
	}
	registry.Unlock()
	st.mu.Lock()
	closed := st.closed
	st.closed = true
	st.mu.Unlock()
	if closed {
		return nil
	}
	return st.base.Close()
}

// Inject adds a rule and returns it. It panics on a rule that cannot
// apply (a fault on an operation it does not fit, a bad key pattern), as
// regexp.MustCompile does: rules are written by tests.
func (st *Store) Inject(r Rule) *Injected {
	if err := r.validate(); err != nil {
		panic(err)
	}
	in := &Injected{st: st, rule: r}
	st.mu.Lock()
	st.rules = append(st.rules, in)
	st.mu.Unlock()
	return in
}

// Clear removes every rule.
func (st *Store) Clear() {
	st.mu.Lock()
	st.rules = nil
	st.mu.Unlock()
}

// decide consults the rules of op on key, among faults of the given
// kinds, and returns the fault of the first that fires.
func (st *Store) decide(op Op, key string, kinds ...faultKind) (Fault, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, in := range st.rules {
		r := in.rule
		if r.Op != op || !slices.Contains(kinds, r.Fault.kind) || !Match(r.Key, key) {
			continue
		}
		in.seen++
		if in.seen <= r.After || (r.Times > 0 && in.fired >= r.Times) {
			continue
		}
		in.fired++
		return r.Fault, true
	}
	return Fault{}, false
}

// mayFire reports whether a rule of op and kind matches key, whatever
// its counts.
func (st *Store) mayFire(op Op, key string, kind faultKind) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, in := range st.rules {
		if in.rule.Op == op && in.rule.Fault.kind == kind && Match(in.rule.Key, key) {
			return true
		}
	}
	return false
}

// hasRules reports whether any rule of op and kind is in place.
func (st *Store) hasRules(op Op, kind faultKind) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, in := range st.rules {
		if in.rule.Op == op && in.rule.Fault.kind == kind {
			return true
		}
	}
	return false
}

// Entry is one operation in the op log.
type Entry struct {
	Op  Op
	Key string
	// Size: for OpClose the bytes that landed.
	Size int64
	// Fault is the injected fault, "" when none fired.
	Fault string
	// Err is the error the operation returned, "" on success.
	Err string
}

func (e Entry) String() string {
	s := e.Op.String() + " " + e.Key
	if e.Op == OpClose && e.Err == "" {
		s += fmt.Sprintf(" (%d bytes)", e.Size)
	}
	if e.Fault != "" {
		s += " [" + e.Fault + "]"
	}
	if e.Err != "" {
		s += ": " + e.Err
	}
	return s
}

func (st *Store) record(e Entry) {
	st.mu.Lock()
	st.log = append(st.log, e)
	st.mu.Unlock()
}

func (st *Store) recordErr(op Op, key string, f Fault, fired bool, err error) {
	e := Entry{Op: op, Key: key}
	if fired {
		e.Fault = f.String()
	}
	if err != nil {
		e.Err = err.Error()
	}
	st.record(e)
}

// Log returns a copy of the op log, oldest first.
func (st *Store) Log() []Entry {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.log)
}

// ResetLog empties the op log.
func (st *Store) ResetLog() {
	st.mu.Lock()
	st.log = nil
	st.mu.Unlock()
}

type urlOpener struct{}

// OpenBucketURL opens faulty://NAME (the path is the caller's key prefix).
func (urlOpener) OpenBucketURL(_ context.Context, u *url.URL) (*blob.Bucket, error) {
	if u.RawQuery != "" {
		return nil, fmt.Errorf("open %s: faulty URLs take no query parameters", u.Redacted())
	}
	st := Lookup(u.Host)
	if st == nil {
		return nil, fmt.Errorf("open %s: no fault-injecting store named %q is registered (blobfault.NewMem): %w", u.Redacted(), u.Host, errNoStore)
	}
	return st.Bucket(), nil
}

var errNoStore = errors.New("no such store")
