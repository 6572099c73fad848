package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCodes(t *testing.T) {
	base := errors.New("disk full")
	cases := []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{New(ErrNotFound, `job "x" not found`), codes.NotFound, `job "x" not found`},
		{fmt.Errorf("cancel: %w", New(ErrFailedPrecondition, "job is FINISHED")), codes.FailedPrecondition, "cancel: job is FINISHED"},
		{Errorf(ErrInternal, "store job: %w", base), codes.Internal, "store job: disk full"},
		{fmt.Errorf("submit: %w", ErrInvalidArgument), codes.InvalidArgument, "submit: invalid argument"},
		{status.Error(codes.Aborted, "from another RPC"), codes.Aborted, "from another RPC"},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "wait: context deadline exceeded"},
		{context.Canceled, codes.Canceled, "context canceled"},
		{base, codes.Unknown, "disk full"},
	}
	for _, c := range cases {
		st := status.Convert(ToStatus(c.err))
		if st.Code() != c.code || st.Message() != c.msg {
			t.Errorf("%v: status %v %q, want %v %q", c.err, st.Code(), st.Message(), c.code, c.msg)
		}
		if got := Code(c.err); got != c.code {
			t.Errorf("Code(%v) = %v, want %v", c.err, got, c.code)
		}
	}
	// Built errors carry their status without the interceptor, and keep
	// what they wrap.
	err := Errorf(ErrInternal, "store job: %w", base)
	if status.Code(err) != codes.Internal || !errors.Is(err, base) || !errors.Is(err, ErrInternal) {
		t.Fatalf("%v: code %v, wraps base %v", err, status.Code(err), errors.Is(err, base))
	}
	if ToStatus(nil) != nil {
		t.Fatal("nil became an error")
	}
}
