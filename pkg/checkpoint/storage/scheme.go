package storage

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"gocloud.dev/blob"
)

// Besides its built-in schemes, Open accepts any scheme that a gocloud.dev/blob
// driver linked into the program registered on blob.DefaultURLMux (drivers
// do so in their init, blob.DefaultURLMux().RegisterBucket): a third-party
// driver, or in tests internal/blobfault's faulty://NAME/prefix. The URL's
// host names the bucket, its path is the key prefix, and its query goes to
// the driver.

// registeredScheme reports whether a linked blob driver opens scheme.
func registeredScheme(scheme string) bool {
	return scheme != "" && blob.DefaultURLMux().ValidBucketScheme(scheme)
}

// openRegistered opens s at u through the driver registered for u.Scheme.
func (s *Storage) openRegistered(ctx context.Context, rawURL string, u *url.URL) error {
	if u.Host == "" {
		return fmt.Errorf("checkpoint storage URL %q: the bucket name is missing (%s://bucket/prefix): %w", rawURL, u.Scheme, ErrBadURL)
	}
	bucketURL := &url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: u.RawQuery}
	b, err := blob.DefaultURLMux().OpenBucketURL(ctx, bucketURL)
	if err != nil {
		return fmt.Errorf("open checkpoint storage %q: %w", rawURL, err)
	}
	s.bucket = b
	s.prefix = keyPrefix(u.Path)
	s.url = &url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: u.RawQuery, Path: "/" + strings.TrimSuffix(s.prefix, "/")}
	return nil
}
