package blobfault

import (
	"bytes"
	"context"
	"errors"
	"io"

	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

// bucket is the driver.Bucket of a Store: each operation consults the
// rules, goes to the base bucket, and is logged.
type bucket struct{ st *Store }

var _ driver.Bucket = (*bucket)(nil)

// coded carries the code of a base-bucket error without its "blob (key
// ...)" prefix, which the portable type adds again.
type coded struct {
	code gcerrors.ErrorCode
	err  error
}

func (c *coded) Error() string { return c.err.Error() }
func (c *coded) Unwrap() error { return c.err }

// fromBase strips the portable wrapping of an error of the base bucket.
func fromBase(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	code := gcerrors.Code(err)
	if u, ok := err.(interface{ Unwrap() []error }); ok && len(u.Unwrap()) > 0 && u.Unwrap()[0] != nil {
		return &coded{code: code, err: u.Unwrap()[0]}
	}
	return &coded{code: code, err: err}
}

func (b *bucket) ErrorCode(err error) gcerrors.ErrorCode {
	var c *coded
	if errors.As(err, &c) {
		return c.code
	}
	if errors.Is(err, ErrInjected) {
		return gcerrors.Internal
	}
	return gcerrors.Code(err)
}

func (b *bucket) As(any) bool             { return false }
func (b *bucket) ErrorAs(error, any) bool { return false }
func (b *bucket) Close() error            { return nil }
func (b *bucket) SignedURL(context.Context, string, *driver.SignedURLOptions) (string, error) {
	return "", &coded{code: gcerrors.Unimplemented, err: errors.New("blobfault: signed URLs are not supported")}
}

func (b *bucket) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	if f, ok := b.st.decide(OpAttributes, key, kindFail); ok {
		err := f.error(OpAttributes, key)
		b.st.recordErr(OpAttributes, key, f, true, err)
		return nil, err
	}
	a, err := b.st.base.Attributes(ctx, key)
	err = fromBase(err)
	b.st.recordErr(OpAttributes, key, Fault{}, false, err)
	if err != nil {
		return nil, err
	}
	return &driver.Attributes{
		CacheControl: a.CacheControl, ContentDisposition: a.ContentDisposition, ContentEncoding: a.ContentEncoding,
		ContentLanguage: a.ContentLanguage, ContentType: a.ContentType, Metadata: a.Metadata,
		CreateTime: a.CreateTime, ModTime: a.ModTime, Size: a.Size, MD5: a.MD5, ETag: a.ETag, AsFunc: a.As,
	}, nil
}

func (b *bucket) ListPaged(ctx context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	if f, ok := b.st.decide(OpList, opts.Prefix, kindFail); ok {
		err := f.error(OpList, opts.Prefix)
		b.st.recordErr(OpList, opts.Prefix, f, true, err)
		return nil, err
	}
	token := opts.PageToken
	if token == nil {
		token = blob.FirstPageToken
	}
	size := opts.PageSize
	if size <= 0 {
		size = 1000
	}
	objs, next, err := b.st.base.ListPage(ctx, token, size, &blob.ListOptions{Prefix: opts.Prefix, Delimiter: opts.Delimiter, BeforeList: opts.BeforeList})
	err = fromBase(err)
	b.st.recordErr(OpList, opts.Prefix, Fault{}, false, err)
	if err != nil {
		return nil, err
	}
	page := &driver.ListPage{NextPageToken: next}
	for _, o := range objs {
		page.Objects = append(page.Objects, &driver.ListObject{Key: o.Key, ModTime: o.ModTime, Size: o.Size, MD5: o.MD5, IsDir: o.IsDir, AsFunc: o.As})
		if err := b.vanish(ctx, o); err != nil {
			return nil, err
		}
	}
	return page, nil
}

// vanish deletes, from the base, the objects of a listed entry that a
// Vanish rule fires on.
func (b *bucket) vanish(ctx context.Context, o *blob.ListObject) error {
	if !b.st.hasRules(OpList, kindVanish) {
		return nil
	}
	keys := []string{o.Key}
	if o.IsDir {
		keys = nil
		it := b.st.base.List(&blob.ListOptions{Prefix: o.Key})
		for {
			sub, err := it.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fromBase(err)
			}
			keys = append(keys, sub.Key)
		}
	}
	for _, k := range keys {
		if !b.st.mayFire(OpList, k, kindVanish) {
			continue
		}
		f, ok := b.st.decide(OpList, k, kindVanish)
		if !ok {
			continue
		}
		err := fromBase(b.st.base.Delete(ctx, k))
		b.st.recordErr(OpList, k, f, true, err)
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *bucket) NewRangeReader(ctx context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	f, fired := b.st.decide(OpRead, key, kindFail, kindFlip)
	if fired && f.kind == kindFail {
		err := f.error(OpRead, key)
		b.st.recordErr(OpRead, key, f, true, err)
		return nil, err
	}
	var ro *blob.ReaderOptions
	if opts != nil {
		ro = &blob.ReaderOptions{BeforeRead: opts.BeforeRead}
	}
	r, err := b.st.base.NewRangeReader(ctx, key, offset, length, ro)
	err = fromBase(err)
	b.st.recordErr(OpRead, key, f, fired, err)
	if err != nil {
		return nil, err
	}
	rd := &reader{r: r, pos: offset, flip: -1}
	if fired {
		rd.flip = f.n
		if rd.flip < 0 {
			rd.flip += r.Size()
		}
	}
	return rd, nil
}

type reader struct {
	r    *blob.Reader
	pos  int64 // object offset of the next byte read
	flip int64 // object offset of the byte to invert, or -1
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.flip >= r.pos && r.flip < r.pos+int64(n) {
		p[r.flip-r.pos] ^= 0xff
	}
	r.pos += int64(n)
	return n, fromBase(err)
}

func (r *reader) Close() error  { return fromBase(r.r.Close()) }
func (r *reader) As(i any) bool { return r.r.As(i) }
func (r *reader) Attributes() *driver.ReaderAttributes {
	return &driver.ReaderAttributes{ContentType: r.r.ContentType(), ModTime: r.r.ModTime(), Size: r.r.Size()}
}

func (b *bucket) NewTypedWriter(ctx context.Context, key, contentType string, opts *driver.WriterOptions) (driver.Writer, error) {
	if f, ok := b.st.decide(OpCreate, key, kindFail); ok {
		err := f.error(OpCreate, key)
		b.st.recordErr(OpCreate, key, f, true, err)
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	wo := &blob.WriterOptions{
		BufferSize: opts.BufferSize, MaxConcurrency: opts.MaxConcurrency, CacheControl: opts.CacheControl,
		ContentDisposition: opts.ContentDisposition, ContentEncoding: opts.ContentEncoding, ContentLanguage: opts.ContentLanguage,
		ContentType: contentType, DisableContentTypeDetection: true, Metadata: opts.Metadata,
		BeforeWrite: opts.BeforeWrite, IfNotExist: opts.IfNotExist,
	}
	w := &writer{b: b, key: key, cancel: cancel}
	if b.st.mayFire(OpClose, key, kindTruncate) {
		w.buf = &bytes.Buffer{} // Close decides how much lands
	} else {
		wo.ContentMD5 = opts.ContentMD5
	}
	bw, err := b.st.base.NewWriter(wctx, key, wo)
	err = fromBase(err)
	b.st.recordErr(OpCreate, key, Fault{}, false, err)
	if err != nil {
		cancel()
		return nil, err
	}
	w.w = bw
	return w, nil
}

type writer struct {
	b      *bucket
	key    string
	w      *blob.Writer
	cancel context.CancelFunc
	buf    *bytes.Buffer // non-nil: held back until Close (a Truncate rule may fire)
	n      int64         // bytes accepted
	failed error         // an injected write failure: Close abandons the object
}

func (w *writer) Write(p []byte) (int, error) {
	if w.failed != nil {
		return 0, w.failed
	}
	if f, ok := w.b.st.decide(OpWrite, w.key, kindFail); ok {
		w.failed = f.error(OpWrite, w.key)
		w.b.st.recordErr(OpWrite, w.key, f, true, w.failed)
		return 0, w.failed
	}
	if w.buf != nil {
		n, _ := w.buf.Write(p)
		w.n += int64(n)
		return n, nil
	}
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, fromBase(err)
}

func (w *writer) Close() error {
	defer w.cancel()
	st := w.b.st
	abandon := func(f Fault, fired bool, err error) error {
		w.cancel()
		_ = w.w.Close()
		st.recordErr(OpClose, w.key, f, fired, err)
		return err
	}
	if w.failed != nil {
		return abandon(Fault{}, false, w.failed)
	}
	f, fired := st.decide(OpClose, w.key, kindFail, kindTruncate)
	if fired && f.kind == kindFail {
		return abandon(f, true, f.error(OpClose, w.key))
	}
	landed := w.n
	if w.buf != nil {
		data := w.buf.Bytes()
		if fired {
			keep := f.n
			if keep < 0 {
				keep += int64(len(data))
			}
			data = data[:min(max(keep, 0), int64(len(data)))]
		}
		landed = int64(len(data))
		if _, err := w.w.Write(data); err != nil {
			return abandon(f, fired, fromBase(err))
		}
	}
	err := fromBase(w.w.Close())
	e := Entry{Op: OpClose, Key: w.key, Size: landed}
	if fired {
		e.Fault = f.String()
	}
	if err != nil {
		e.Err = err.Error()
	}
	st.record(e)
	return err
}

func (b *bucket) Copy(ctx context.Context, dstKey, srcKey string, _ *driver.CopyOptions) error {
	if f, ok := b.st.decide(OpCopy, dstKey, kindFail); ok {
		err := f.error(OpCopy, dstKey)
		b.st.recordErr(OpCopy, dstKey, f, true, err)
		return err
	}
	err := fromBase(b.st.base.Copy(ctx, dstKey, srcKey, nil))
	b.st.recordErr(OpCopy, dstKey, Fault{}, false, err)
	return err
}

func (b *bucket) Delete(ctx context.Context, key string, _ *driver.DeleteOptions) error {
	if f, ok := b.st.decide(OpDelete, key, kindFail); ok {
		err := f.error(OpDelete, key)
		b.st.recordErr(OpDelete, key, f, true, err)
		return err
	}
	err := fromBase(b.st.base.Delete(ctx, key))
	b.st.recordErr(OpDelete, key, Fault{}, false, err)
	return err
}
