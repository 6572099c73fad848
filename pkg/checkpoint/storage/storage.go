package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"

	// Registered on blob.DefaultURLMux for s3://, gs:// and azblob://.
	_ "gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/s3blob"

	checkpointv1 "github.com/flowrt/flow/proto/flow/checkpoint/v1"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrBadURL: the storage URL cannot be used (unknown scheme, relative
	// file path, missing bucket, bad query parameter).
	ErrBadURL = errors.New("bad checkpoint storage URL")
	// ErrNotFound: the object or directory does not exist.
	ErrNotFound = errors.New("not found")
	// ErrBadPath: a relative path is empty, absolute, or leaves its base.
	ErrBadPath = errors.New("bad storage path")
)

const supportedSchemes = "use file:///absolute/dir, s3://bucket/prefix, gs://bucket/prefix, azblob://container/prefix or mem://name/prefix"

// DefaultPartSize is the buffer of streamed writes: the part size of S3
// multipart uploads (5 MiB is S3's minimum part size).
const DefaultPartSize = 5 << 20

// Option configures Open.
type Option func(*options)

type options struct {
	logger   *slog.Logger
	partSize int
	noCreate bool
}

// WithLogger sets the logger for skipped checkpoints and cleanup problems
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithPartSize sets the buffer size of streamed writes, which is the part
// size of S3 multipart uploads (default DefaultPartSize).
func WithPartSize(n int) Option { return func(o *options) { o.partSize = n } }

// withoutCreate makes Open fail with ErrNotFound instead of creating a
// missing file:// directory (readers must not create what they look for).
func withoutCreate() Option { return func(o *options) { o.noCreate = true } }

// Storage is a directory of checkpoint storage: a bucket and a key prefix.
// Paths given to its methods are relative to the directory, '/'-separated,
// clean, and never leave it. A Storage is safe for concurrent use.
type Storage struct {
	url    *url.URL // the directory's URL, path without trailing slash
	bucket *blob.Bucket
	prefix string // key prefix of the directory: "" or "a/b/"
	owner  bool   // Close closes bucket
	local  string // file://: the local directory of the bucket root
	opts   options
}

// memBuckets holds the process-wide named in-memory buckets of mem://NAME:
// every Open of the same name sees the same objects.
var memBuckets struct {
	sync.Mutex
	m map[string]*blob.Bucket
}

// Open opens checkpoint storage at rawURL:
//
//	file:///abs/dir                       local or mounted file system (created if missing)
//	s3://bucket/prefix?region=R[&endpoint=URL][&use_path_style=true]
//	gs://bucket/prefix                    Google Cloud Storage (application default credentials)
//	azblob://container/prefix             Azure Blob Storage (AZURE_STORAGE_ACCOUNT, ...)
//	mem://name/prefix                     in-process memory, shared by name (tests); mem:// alone is private
//
// Credentials come from the environment of the process (for S3 the AWS SDK
// v2 chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, instance
// roles). For remote schemes Open checks that the bucket is reachable.
func Open(ctx context.Context, rawURL string, opts ...Option) (*Storage, error) {
	o := options{logger: slog.Default(), partSize: DefaultPartSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.partSize <= 0 {
		return nil, fmt.Errorf("open checkpoint storage %q: part size %d must be positive: %w", rawURL, o.partSize, ErrBadURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("checkpoint storage URL %q does not parse (%v): %s: %w", rawURL, err, supportedSchemes, ErrBadURL)
	}
	badURL := func(why string) error {
		return fmt.Errorf("checkpoint storage URL %q: %s; %s: %w", rawURL, why, supportedSchemes, ErrBadURL)
	}
	if u.Opaque != "" || u.User != nil || u.Fragment != "" {
		return nil, badURL("not a storage directory URL")
	}
	s := &Storage{opts: o, owner: true}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, badURL(fmt.Sprintf("host %q is not allowed (file URLs take an absolute path: file:///dir)", u.Host))
		}
		if u.RawQuery != "" {
			return nil, badURL("file URLs take no query parameters")
		}
		dir := path.Clean(u.Path)
		if !path.IsAbs(u.Path) {
			return nil, badURL("the path must be absolute")
		}
		if _, err := os.Stat(dir); err != nil {
			if !errors.Is(err, os.ErrNotExist) || o.noCreate {
				return nil, fmt.Errorf("open checkpoint storage %q: %w", rawURL, notFound(err))
			}
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return nil, fmt.Errorf("create checkpoint storage directory %q: %w", dir, err)
			}
		}
		b, err := fileblob.OpenBucket(filepath.FromSlash(dir), &fileblob.Options{
			Metadata:  fileblob.MetadataDontWrite, // no .attrs sidecars: directories stay plain copies
			NoTempDir: true,                       // temp files beside the target: no cross-device rename
		})
		if err != nil {
			return nil, fmt.Errorf("open checkpoint storage %q: %w", rawURL, err)
		}
		s.bucket, s.local = b, dir
		s.url = &url.URL{Scheme: "file", Path: dir}
	case "mem":
		if u.RawQuery != "" {
			return nil, badURL("mem URLs take no query parameters")
		}
		if u.Host == "" {
			s.bucket = memblob.OpenBucket(nil)
		} else {
			memBuckets.Lock()
			if memBuckets.m == nil {
				memBuckets.m = map[string]*blob.Bucket{}
			}
			b, ok := memBuckets.m[u.Host]
			if !ok {
				b = memblob.OpenBucket(nil)
				memBuckets.m[u.Host] = b
			}
			memBuckets.Unlock()
			s.bucket, s.owner = b, false
		}
		s.prefix = keyPrefix(u.Path)
		s.url = &url.URL{Scheme: "mem", Host: u.Host, Path: "/" + strings.TrimSuffix(s.prefix, "/")}
	case "s3", "gs", "azblob":
		if u.Host == "" {
			return nil, badURL("the bucket name is missing (" + u.Scheme + "://bucket/prefix)")
		}
		bucketURL := &url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: u.RawQuery}
		b, err := blob.DefaultURLMux().OpenBucketURL(ctx, bucketURL)
		if err != nil {
			return nil, fmt.Errorf("open checkpoint storage %q: %w (%s)", rawURL, err, supportedSchemes)
		}
		ok, err := b.IsAccessible(ctx)
		if err == nil && !ok {
			err = fmt.Errorf("bucket %q does not exist", u.Host)
		}
		if err != nil {
			_ = b.Close()
			return nil, fmt.Errorf("open checkpoint storage %q: %w; check the bucket name, endpoint and credentials (see docs/checkpointing-storage.md)", rawURL, err)
		}
		s.bucket = b
		s.prefix = keyPrefix(u.Path)
		s.url = &url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: u.RawQuery, Path: "/" + strings.TrimSuffix(s.prefix, "/")}
	case "":
		return nil, badURL("no scheme")
	default:
		if !registeredScheme(u.Scheme) {
			return nil, badURL(fmt.Sprintf("unsupported scheme %q", u.Scheme))
		}
		if err := s.openRegistered(ctx, rawURL, u); err != nil { // scheme.go
			return nil, err
		}
	}
	if s.url.Path == "/" && s.url.Scheme != "file" {
		s.url.Path = ""
	}
	return s, nil
}

func keyPrefix(p string) string {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

func notFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrNotFound, err)
}

// Close releases the bucket. Storages made by Sub share their parent's
// bucket and must not be used after the parent is closed.
func (s *Storage) Close() error {
	if !s.owner {
		return nil
	}
	return s.bucket.Close()
}

// URL is the URL of the storage directory; Open(URL()) opens the same one.
func (s *Storage) URL() string { return s.url.String() }

// URLOf is the URL of rel inside the storage directory (query kept).
func (s *Storage) URLOf(rel string) string {
	u := *s.url
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.Trim(rel, "/")
	return u.String()
}

// Sub is the storage directory rel inside s, sharing its bucket.
func (s *Storage) Sub(rel string) (*Storage, error) {
	key, err := s.key(rel)
	if err != nil {
		return nil, err
	}
	sub := *s
	sub.owner = false
	sub.prefix = key + "/"
	u := *s.url
	sub.url = &u
	sub.url.Path = strings.TrimSuffix(u.Path, "/") + "/" + rel
	return &sub, nil
}

// key maps a relative path to its object key.
func (s *Storage) key(rel string) (string, error) {
	if rel == "" || strings.HasPrefix(rel, "/") || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") || strings.Contains(rel, "\\") {
		return "", fmt.Errorf("path %q must be relative, clean and inside the storage directory: %w", rel, ErrBadPath)
	}
	return s.prefix + rel, nil
}

// dirKey maps a relative directory ("" for the storage directory itself)
// to its listing prefix, ending in '/' unless it is the bucket root.
func (s *Storage) dirKey(rel string) (string, error) {
	rel = strings.TrimSuffix(rel, "/")
	if rel == "" || rel == "." {
		return s.prefix, nil
	}
	k, err := s.key(rel)
	if err != nil {
		return "", err
	}
	return k + "/", nil
}

func (s *Storage) wrap(op, rel string, err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		err = notFound(err)
	}
	return fmt.Errorf("%s %s: %w", op, s.URLOf(rel), err)
}

// Create starts a streamed write of rel. The object appears, whole, when
// Close returns nil; on S3 large objects are multipart uploads. Cancel ctx
// before Close to abandon the write (nothing appears).
func (s *Storage) Create(ctx context.Context, rel string) (io.WriteCloser, error) {
	key, err := s.key(rel)
	if err != nil {
		return nil, err
	}
	w, err := s.bucket.NewWriter(ctx, key, &blob.WriterOptions{
		ContentType:                 "application/octet-stream",
		BufferSize:                  s.opts.partSize,
		DisableContentTypeDetection: true,
	})
	if err != nil {
		return nil, s.wrap("create", rel, err)
	}
	return &writer{w: w, s: s, rel: rel}, nil
}

type writer struct {
	w   *blob.Writer
	s   *Storage
	rel string
}

func (w *writer) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		return n, w.s.wrap("write", w.rel, err)
	}
	return n, nil
}

func (w *writer) Close() error {
	if err := w.w.Close(); err != nil {
		return w.s.wrap("write", w.rel, err)
	}
	return nil
}

// WriteFile writes data to rel in one object.
func (s *Storage) WriteFile(ctx context.Context, rel string, data []byte) error {
	key, err := s.key(rel)
	if err != nil {
		return err
	}
	if err := s.bucket.WriteAll(ctx, key, data, &blob.WriterOptions{ContentType: "application/octet-stream", DisableContentTypeDetection: true}); err != nil {
		return s.wrap("write", rel, err)
	}
	return nil
}

// ReadFile reads the whole object rel.
func (s *Storage) ReadFile(ctx context.Context, rel string) ([]byte, error) {
	key, err := s.key(rel)
	if err != nil {
		return nil, err
	}
	b, err := s.bucket.ReadAll(ctx, key)
	if err != nil {
		return nil, s.wrap("read", rel, err)
	}
	return b, nil
}

// Upload copies the local file to rel, streamed, and returns its handle:
// Path rel, Size, LocalName the file's base name, and Shared when rel is
// under a job's shared directory (IsSharedPath).
func (s *Storage) Upload(ctx context.Context, rel, localFile string) (*checkpointv1.FileHandle, error) {
	f, err := os.Open(localFile)
	if err != nil {
		return nil, fmt.Errorf("upload %s to %s: %w", localFile, s.URLOf(rel), err)
	}
	defer f.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.Create(wctx, rel)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(w, f)
	if err != nil {
		cancel() // abandon the partial object
		_ = w.Close()
		return nil, fmt.Errorf("upload %s: %w", localFile, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("upload %s: %w", localFile, err)
	}
	return &checkpointv1.FileHandle{Path: rel, Size: n, Shared: IsSharedPath(rel), LocalName: filepath.Base(localFile)}, nil
}

// Open opens rel for reading; ErrNotFound if it does not exist.
func (s *Storage) Open(ctx context.Context, rel string) (io.ReadCloser, error) {
	key, err := s.key(rel)
	if err != nil {
		return nil, err
	}
	r, err := s.bucket.NewReader(ctx, key, nil)
	if err != nil {
		return nil, s.wrap("open", rel, err)
	}
	return r, nil
}

// Download copies rel to localFile (parent directories created), through a
// temporary file renamed into place after it is synced.
func (s *Storage) Download(ctx context.Context, rel, localFile string) (err error) {
	r, err := s.Open(ctx, rel)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := os.MkdirAll(filepath.Dir(localFile), 0o777); err != nil {
		return fmt.Errorf("download %s: %w", s.URLOf(rel), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(localFile), "."+filepath.Base(localFile)+".*.download")
	if err != nil {
		return fmt.Errorf("download %s: %w", s.URLOf(rel), err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, r); err != nil {
		return fmt.Errorf("download %s to %s: %w", s.URLOf(rel), localFile, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("download %s to %s: %w", s.URLOf(rel), localFile, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("download %s to %s: %w", s.URLOf(rel), localFile, err)
	}
	if err := os.Rename(tmp.Name(), localFile); err != nil {
		return fmt.Errorf("download %s to %s: %w", s.URLOf(rel), localFile, err)
	}
	return nil
}

// Exists reports whether the object rel exists.
func (s *Storage) Exists(ctx context.Context, rel string) (bool, error) {
	key, err := s.key(rel)
	if err != nil {
		return false, err
	}
	ok, err := s.bucket.Exists(ctx, key)
	if err != nil {
		return false, s.wrap("stat", rel, err)
	}
	return ok, nil
}

// Delete deletes the object rel. Deleting a missing object is not an
// error, so interrupted cleanups can simply be repeated.
func (s *Storage) Delete(ctx context.Context, rel string) error {
	key, err := s.key(rel)
	if err != nil {
		return err
	}
	if err := s.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return s.wrap("delete", rel, err)
	}
	s.removeEmptyDirs(path.Dir(key))
	return nil
}

// Object is one listed object.
type Object struct {
	Path string // relative to the storage directory
	Size int64
}

// List lists every object under the directory dir ("" for all), recursively,
// in lexical order of path.
func (s *Storage) List(ctx context.Context, dir string) ([]Object, error) {
	prefix, err := s.dirKey(dir)
	if err != nil {
		return nil, err
	}
	var out []Object
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, s.wrap("list", dir, err)
		}
		if obj.IsDir {
			continue
		}
		out = append(out, Object{Path: strings.TrimPrefix(obj.Key, s.prefix), Size: obj.Size})
	}
}

// listDirs lists the immediate subdirectories of dir by name.
func (s *Storage) listDirs(ctx context.Context, dir string) ([]string, error) {
	prefix, err := s.dirKey(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix, Delimiter: "/"})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, s.wrap("list", dir, err)
		}
		if obj.IsDir {
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(obj.Key, prefix), "/"))
		}
	}
}

// DeleteDir deletes every object under the directory dir and returns how
// many it deleted. Files named first (e.g. "_metadata") are deleted before
// the others, so a directory that is half deleted never looks complete.
func (s *Storage) DeleteDir(ctx context.Context, dir string, first ...string) (int, error) {
	if strings.TrimSuffix(dir, "/") == "" {
		return 0, fmt.Errorf("delete the whole storage directory %s: refused: %w", s.URL(), ErrBadPath)
	}
	n := 0
	for _, f := range first {
		rel := strings.TrimSuffix(dir, "/") + "/" + f
		ok, err := s.Exists(ctx, rel)
		if err != nil {
			return n, err
		}
		if ok {
			if err := s.Delete(ctx, rel); err != nil {
				return n, err
			}
			n++
		}
	}
	objs, err := s.List(ctx, dir)
	if err != nil {
		return n, err
	}
	for _, o := range objs {
		if err := s.Delete(ctx, o.Path); err != nil {
			return n, err
		}
		n++
	}
	if key, err := s.dirKey(dir); err == nil {
		s.removeEmptyDirs(strings.TrimSuffix(key, "/"))
	}
	return n, nil
}

// removeEmptyDirs removes, for file:// storage, the directory of key and
// its parents while they are empty, up to the storage directory; object
// stores have no directories.
func (s *Storage) removeEmptyDirs(keyDir string) {
	if s.local == "" {
		return
	}
	stop := strings.TrimSuffix(s.prefix, "/")
	for keyDir != "." && keyDir != "" && keyDir != stop && strings.HasPrefix(keyDir, s.prefix) {
		if err := os.Remove(filepath.Join(s.local, filepath.FromSlash(keyDir))); err != nil {
			return // not empty, or already gone
		}
		keyDir = path.Dir(keyDir)
	}
}
