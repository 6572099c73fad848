package blobfault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/flowrt/flow/internal/blobfault"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore(t *testing.T) (*blobfault.Store, *blob.Bucket) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	st, err := blobfault.NewMem(fmt.Sprintf("t%x", b))
	if err != nil {
		t.Fatal(err)
	}
	bk := st.Bucket()
	t.Cleanup(func() { _ = bk.Close(); _ = st.Close() })
	return st, bk
}

func write(ctx context.Context, b *blob.Bucket, key, data string) error {
	w, err := b.NewWriter(ctx, key, &blob.WriterOptions{DisableContentTypeDetection: true})
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, data); err != nil {
		_ = w.Close()
		return err
	}
	return w.Close()
}

func exists(t *testing.T, b *blob.Bucket, key string) bool {
	t.Helper()
	ok, err := b.Exists(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pat, key string
		want     bool
	}{
		{"", "a/b", true},
		{"a/*", "a/b", true},
		{"a/*", "a/b/c", false},
		{"**/chk-2/*", "ck/job/chk-2/x", true},
		{"**/chk-2/*", "job/chk-2/x", true},
		{"**/chk-2/*", "job/chk-22/x", false},
		{"**/_metadata", "_metadata", true},
		{"job/**", "job/a/b/c", true},
		{"job/**", "other/a", false},
		{"*/chk-?/_metadata", "j/chk-3/_metadata", true},
		{"a/b", "a/b/", true}, // directory entries of delimited listings
	} {
		if got := blobfault.Match(c.pat, c.key); got != c.want {
			t.Errorf("Match(%q, %q) = %t, want %t", c.pat, c.key, got, c.want)
		}
	}
}

func TestNoFaultsPassThrough(t *testing.T) {
	ctx := context.Background()
	st, b := newStore(t)
	if err := write(ctx, b, "d/a", "alpha"); err != nil {
		t.Fatal(err)
	}
	got, err := b.ReadAll(ctx, "d/a")
	if err != nil || string(got) != "alpha" {
		t.Fatalf("read back %q %v", got, err)
	}
	if _, err := b.ReadAll(ctx, "d/missing"); gcerrors.Code(err) != gcerrors.NotFound {
		t.Fatalf("missing object: %v (code %v)", err, gcerrors.Code(err))
	} else if strings.Count(err.Error(), "blob (key") != 1 {
		t.Fatalf("the error repeats the portable prefix: %v", err)
	}
	if base, _ := st.Base().ReadAll(ctx, "d/a"); string(base) != "alpha" {
		t.Fatalf("base holds %q", base)
	}
	if err := b.Delete(ctx, "d/a"); err != nil {
		t.Fatal(err)
	}
	var log []string
	for _, e := range st.Log() {
		log = append(log, e.Op.String()+" "+e.Key)
	}
	want := []string{"create d/a", "close d/a", "read d/a", "read d/missing", "delete d/a"}
	if !slices.Equal(log, want) {
		t.Fatalf("log %q, want %q", log, want)
	}
}

func TestFailedWritesLeaveNothing(t *testing.T) {
	ctx := context.Background()
	for _, op := range []blobfault.Op{blobfault.OpCreate, blobfault.OpWrite, blobfault.OpClose} {
		t.Run(op.String(), func(t *testing.T) {
			st, b := newStore(t)
			cause := errors.New("disk on fire")
			in := st.Inject(blobfault.Rule{Op: op, Key: "**/chk-2/*", Fault: blobfault.Fail(cause), Times: 1})
			if err := write(ctx, b, "job/chk-1/a", "a"); err != nil {
				t.Fatalf("a key the rule does not match: %v", err)
			}
			err := write(ctx, b, "job/chk-2/a", "a")
			if !errors.Is(err, blobfault.ErrInjected) || !errors.Is(err, cause) || !strings.Contains(err.Error(), "job/chk-2/a") {
				t.Fatalf("injected %s failure: %v", op, err)
			}
			if exists(t, b, "job/chk-2/a") {
				t.Fatal("a failed write left an object")
			}
			if err := write(ctx, b, "job/chk-2/a", "again"); err != nil || in.Fired() != 1 {
				t.Fatalf("the rule fired once (Times 1); the retry: %v, fired %d", err, in.Fired())
			}
			if got, _ := b.ReadAll(ctx, "job/chk-2/a"); string(got) != "again" {
				t.Fatalf("retry wrote %q", got)
			}
		})
	}
}

func TestAfterAndTimes(t *testing.T) {
	ctx := context.Background()
	st, b := newStore(t)
	in := st.Inject(blobfault.Rule{Op: blobfault.OpCreate, Fault: blobfault.Fail(nil), After: 2, Times: 2})
	var got []bool
	for i := range 6 {
		got = append(got, write(ctx, b, fmt.Sprintf("k%d", i), "x") != nil)
	}
	if want := []bool{false, false, true, true, false, false}; !slices.Equal(got, want) {
		t.Fatalf("failures %v, want %v", got, want)
	}
	in.Remove()
	st.Inject(blobfault.Rule{Op: blobfault.OpDelete, Key: "k1", Fault: blobfault.Fail(nil)})
	if err := b.Delete(ctx, "k1"); !errors.Is(err, blobfault.ErrInjected) {
		t.Fatalf("delete: %v", err)
	}
	st.Clear()
	if err := b.Delete(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
}

func TestTruncate(t *testing.T) {
	ctx := context.Background()
	st, b := newStore(t)
	st.Inject(blobfault.Rule{Op: blobfault.OpClose, Key: "t/half", Fault: blobfault.Truncate(3)})
	st.Inject(blobfault.Rule{Op: blobfault.OpClose, Key: "t/short", Fault: blobfault.Truncate(-1)})
	for _, k := range []string{"t/half", "t/short", "t/whole"} {
		if err := write(ctx, b, k, "abcdef"); err != nil {
			t.Fatalf("a truncated write reports success; %s: %v", k, err)
		}
	}
	for k, want := range map[string]string{"t/half": "abc", "t/short": "abcde", "t/whole": "abcdef"} {
		if got, err := b.ReadAll(ctx, k); err != nil || string(got) != want {
			t.Errorf("%s holds %q %v, want %q", k, got, err, want)
		}
	}
	var closes []string
	for _, e := range st.Log() {
		if e.Op == blobfault.OpClose {
			closes = append(closes, e.String())
		}
	}
	want := []string{"close t/half (3 bytes) [truncate to 3]", "close t/short (5 bytes) [truncate to -1]", "close t/whole (6 bytes)"}
	if !slices.Equal(closes, want) {
		t.Fatalf("closes %q, want %q", closes, want)
	}
}

func TestFlip(t *testing.T) {
	ctx := context.Background()
	st, b := newStore(t)
	data := bytes.Repeat([]byte("0123456789"), 100)
	if err := b.WriteAll(ctx, "f", data, nil); err != nil {
		t.Fatal(err)
	}
	st.Inject(blobfault.Rule{Op: blobfault.OpRead, Key: "f", Fault: blobfault.Flip(-1), Times: 1})
	got, err := b.ReadAll(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, data) || !bytes.Equal(got[:len(got)-1], data[:len(data)-1]) || got[len(got)-1] != data[len(data)-1]^0xff {
		t.Fatal("the last byte is not the only one flipped")
	}
	if again, _ := b.ReadAll(ctx, "f"); !bytes.Equal(again, data) {
		t.Fatal("the stored object changed")
	}
	// A range read past the flipped offset sees it at the right place.
	st.Inject(blobfault.Rule{Op: blobfault.OpRead, Key: "f", Fault: blobfault.Flip(505)})
	r, err := b.NewRangeReader(ctx, "f", 500, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	part, err := io.ReadAll(r)
	_ = r.Close()
	if err != nil || len(part) != 10 || part[5] != data[505]^0xff || part[4] != data[504] {
		t.Fatalf("range read %q %v", part, err)
	}
}

func TestVanish(t *testing.T) {
	ctx := context.Background()
	st, b := newStore(t)
	for _, k := range []string{"job/chk-1/_metadata", "job/chk-1/a", "job/chk-2/_metadata"} {
		if err := write(ctx, b, k, "x"); err != nil {
			t.Fatal(err)
		}
	}
	st.Inject(blobfault.Rule{Op: blobfault.OpList, Key: "**/chk-1/_metadata", Fault: blobfault.Vanish(), Times: 1})
	// A delimited listing names the directory; the matching object under
	// it is gone when read.
	it := b.List(&blob.ListOptions{Prefix: "job/", Delimiter: "/"})
	var dirs []string
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, o.Key)
	}
	if !slices.Equal(dirs, []string{"job/chk-1/", "job/chk-2/"}) {
		t.Fatalf("listed %v", dirs)
	}
	if _, err := b.ReadAll(ctx, "job/chk-1/_metadata"); gcerrors.Code(err) != gcerrors.NotFound {
		t.Fatalf("read a vanished object: %v", err)
	}
	if !exists(t, b, "job/chk-1/a") || !exists(t, b, "job/chk-2/_metadata") {
		t.Fatal("objects the rule does not match vanished")
	}
	st.Inject(blobfault.Rule{Op: blobfault.OpList, Key: "job/chk-1/a", Fault: blobfault.Vanish()})
	objs, _, err := b.ListPage(ctx, blob.FirstPageToken, 10, &blob.ListOptions{Prefix: "job/chk-1/"})
	if err != nil || len(objs) != 1 || objs[0].Key != "job/chk-1/a" {
		t.Fatalf("the listing still names the object that vanishes: %v %v", objs, err)
	}
	if exists(t, b, "job/chk-1/a") {
		t.Fatal("listed object did not vanish")
	}
}

func TestURLAndRegistry(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	if blobfault.Lookup(st.Name()) != st {
		t.Fatal("lookup")
	}
	if _, err := blobfault.NewMem(st.Name()); err == nil {
		t.Fatal("registered a name twice")
	}
	if _, err := blobfault.NewMem("Bad_Name"); err == nil {
		t.Fatal("accepted a name that is not a URL host")
	}
	if got, want := st.URL("/ck/x/"), "faulty://"+st.Name()+"/ck/x"; got != want {
		t.Fatalf("URL %q, want %q", got, want)
	}
	b, err := blob.OpenBucket(ctx, "faulty://"+st.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WriteAll(ctx, "k", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Base().ReadAll(ctx, "k"); string(got) != "v" {
		t.Fatalf("the URL opened another bucket: %q", got)
	}
	if _, err := blob.OpenBucket(ctx, "faulty://nobody-registered-this"); err == nil || !strings.Contains(err.Error(), "blobfault.NewMem") {
		t.Fatalf("unknown store: %v", err)
	}
}

func TestInvalidRulesPanic(t *testing.T) {
	st, _ := newStore(t)
	for _, r := range []blobfault.Rule{
		{Op: blobfault.OpRead, Fault: blobfault.Truncate(1)},
		{Op: blobfault.OpClose, Fault: blobfault.Flip(1)},
		{Op: blobfault.OpRead, Fault: blobfault.Vanish()},
		{Op: blobfault.OpRead},
		{Op: blobfault.OpRead, Key: "[", Fault: blobfault.Fail(nil)},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("rule %v was accepted", r)
				}
			}()
			st.Inject(r)
		}()
	}
}
